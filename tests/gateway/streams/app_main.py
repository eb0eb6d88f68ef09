"""The stream API tests' app, run as ``python app_main.py`` (a real app: launcher, supervisor, processes).

Environment: STREAMS_TEST_APP (app name), STREAMS_TEST_PORT (the gateway's port), STREAMS_TEST_OUT (the
nodes' pid file), STREAMS_TEST_TOKEN (optional), STREAMS_TEST_WORKERS ("0": sources only), STREAMS_TEST_FPS.
"""

import os

from edgeflow import EdgeApp

from stream_nodes import Annotate, ApiGateway, Synthetic

env = os.environ.get
app = EdgeApp(env("STREAMS_TEST_APP", "streams-test"))
app.node(ApiGateway, name="gateway", port=int(env("STREAMS_TEST_PORT", "0")), token=env("STREAMS_TEST_TOKEN"))
app.streams(source=Synthetic, workers=[] if env("STREAMS_TEST_WORKERS") == "0" else [Annotate], to="gateway",
            source_options={"fps": float(env("STREAMS_TEST_FPS", "10")), "out": env("STREAMS_TEST_OUT")},
            worker_options={"out": env("STREAMS_TEST_OUT")})

if __name__ == "__main__":          # spawned node processes import this file for its classes only
    app.run()
