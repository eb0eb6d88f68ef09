"""Vector flow: per camera stream, Lucas-Kanade optical flow drawn as arrows; streams added at run time.

    python examples/vector_flow/main.py                 (or: edgeflow run examples/vector_flow/pipeline.yaml)

The app starts with the gateway only. Each stream added over its REST API (``POST /api/streams`` with a name,
an ``rtsp_url`` (or a video file) and the stream's params ``grid_size`` and ``threshold``) becomes

    stream-<id>-source (VideoSource, 15 fps) --> stream-<id>-flow-worker (FlowWorker) --> gateway

while everything else keeps running; ``PUT /api/streams/<id>`` with new params reaches the running worker
(its ``on_params``: no restart), ``DELETE`` stops the stream's processes. Each stream's annotated frames
are on ``/ws/frames?stream_id=<id>`` and its figures on ``/metrics`` (``vector_flow_*{stream_id="<id>"}``):
see README.md beside this file, prometheus.yml and grafana-dashboard.json.

The gateway listens on $GATEWAY_HTTP_PORT (default 8000) and takes its token from $EDGEFLOW_GATEWAY_TOKEN
(required when it is bound beyond loopback, e.g. EDGEFLOW_BIND=0.0.0.0).
"""

from edgeflow import EdgeApp, GatewayNode
from edgeflow.nodes.gateway.interfaces.web import WebInterface
from edgeflow.sources import VideoSource

from flow import FlowWorker          # flow.py beside this file (python main.py puts this folder on sys.path)

SOURCE_FPS = 15                       # frames per second each stream's source delivers


class Gateway(GatewayNode):
    """The web gateway: dashboard, stream API, /ws/frames, /metrics (port $GATEWAY_HTTP_PORT, default 8000;
    token $EDGEFLOW_GATEWAY_TOKEN)."""

    def configure(self):
        self.add_interface(WebInterface())


app = EdgeApp("vector-flow")
app.node(Gateway, name="gateway", node_port=30080)
app.streams(source=VideoSource, workers=[FlowWorker], to="gateway", source_options={"fps": SOURCE_FPS})

if __name__ == "__main__":          # spawned node processes import this file for its classes only
    app.run()
