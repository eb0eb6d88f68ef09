"""``edgeflow replay FILE``: publish a recording's frames into an app's topics with their recorded timing.

    edgeflow replay run.mcap                          every recorded topic, real time, into the recorded app
    edgeflow replay run.mcap --speed max --topics camera,lidar
    edgeflow replay run.mcap --start 10 --end 20      seconds 10 to 20 of the recording (or epoch seconds)
    edgeflow replay run.mcap --app bench --loop       into app "bench", over and over until Ctrl-C
    edgeflow replay run.mcap --wait 10                wait up to 10 s for a reader on every topic first

The app's consumers read the frames as they would read their live sources: run them on this host with
``python main.py --node detector`` (one per consumer node) before or while replaying; a consumer attached
before a frame is published gets it (DURABLE: every frame; REALTIME: the newest). A topic whose node is
running now has a live publisher and is refused: replay the others (``--topics``). When the recording ends
the rings close: ``--node`` consumers drain them and finish. Ctrl-C stops at once and cleans up.

``--topics`` takes ring topics (``detector.r0``) or node names (``detector``: all its replica rings).
The exit code is 0 when the recording was played (or Ctrl-C stopped it), 2 for a bad file or flag.
"""

from __future__ import annotations

import signal
import sys

import click


@click.command("replay")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--speed", default="1.0", show_default=True, metavar="X|max",
              help="Playback speed: 2 is twice as fast; max as fast as the rings take frames.")
@click.option("--loop", is_flag=True, help="Start again at the end, until Ctrl-C.")
@click.option("--topics", "topics", multiple=True, metavar="T[,T...]",
              help="Only these ring topics or node names (repeat or comma-separate).")
@click.option("--start", default=None, metavar="T",
              help="From this capture time: seconds from the recording's start, or epoch seconds.")
@click.option("--end", default=None, metavar="T", help="Up to this capture time (as --start).")
@click.option("--app", "app_name", default=None, metavar="NAME",
              help="Publish into this app's topics (default: the app the file was recorded from).")
@click.option("--wait", default=0.0, show_default=True, type=float, metavar="S",
              help="Wait up to S seconds until every topic has a reader before the first frame.")
@click.option("--quiet", "-q", is_flag=True, help="No lines on stderr but errors.")
def replay(files: tuple[str, ...], speed: str, loop: bool, topics: tuple[str, ...], start: str | None,
           end: str | None, app_name: str | None, wait: float, quiet: bool) -> None:
    """Publish the frames of a recording into an app's topics with their recorded inter-frame timing,
    timestamps and meta (the recorded frame id in meta "edgeflow.recorded"). FILES: run.mcap (its rotated
    parts run-0001.mcap... are found), a folder, or the files themselves."""
    from edgeflow.errors import ConfigError
    from edgeflow.record.replay import Player, parse_speed

    parse_speed(speed, "--speed")
    player = Player(list(files) if len(files) > 1 else files[0], topics=list(topics) or None, speed=speed,
                    loop=loop, start=start, end=end)
    app = app_name or player.recording.app
    if not app:
        raise ConfigError(f"{files[0]}: the recording names no app: give --app NAME")
    if wait < 0:
        raise ConfigError(f"--wait {wait:g}: seconds, >= 0")

    def say(text: str) -> None:
        if not quiet:
            click.echo(text, err=True)

    def started(readers: dict) -> None:
        alone = [t for t, n in readers.items() if not n]
        what = "max speed" if player.speed == float("inf") else f"speed {player.speed:g}"
        say(f"replaying {', '.join(player.topics)} into app '{app}' at {what}{' (loop)' if loop else ''}")
        if alone:
            say(f"note: no reader on {', '.join(alone)} yet: frames published before one attaches are not seen")

    previous = {sig: signal.signal(sig, lambda signum, frame: player.stop())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stats = player.publish(app, wait=wait, on_start=started)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        close = getattr(player.recording, "close", None)
        if close is not None:
            close()
    say(stats.line())
    sys.stderr.flush()
