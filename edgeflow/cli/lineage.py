"""``edgeflow lineage FILE --topic T --frame N``: the tree of recorded frames a frame was made from.

    edgeflow lineage run.mcap --topic fusion --frame 120
    edgeflow lineage run.mcap --topic detector --frame 120      both replica rings: detector.r0, detector.r1
    edgeflow lineage run.mcap --topic detector.r1 --frame 120 --format json

Each line is a frame: ring topic and id, the node that made it, its capture time, and the time on the link
from its parent, in its node, and its age when it left (see edgeflow.record.lineage). A node name stands for
all its replica rings (frame ids are per ring: each ring's frame N is a different frame), and the first line
says which rings matched. ``--format json`` prints {"topic", "matched", "trees": [...]}.
Exit code 0 when at least one tree was found, 1 when no matched ring recorded frame N, 2 for a bad flag/file.
"""

from __future__ import annotations

import json
import sys

import click


@click.command("lineage")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--topic", "-t", required=True, help="A recorded ring topic, or a node name (all its replicas).")
@click.option("--frame", "-f", "frame_id", required=True, type=click.IntRange(min=1), help="The frame id.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def lineage(files: tuple[str, ...], topic: str, frame_id: int, fmt: str) -> None:
    """Print the lineage tree of frame --frame of --topic in a recording (FILES: run.mcap, its rotated parts
    are found; a folder; or the files)."""
    from edgeflow.record import lineage as lin
    from edgeflow.record.replay import open_source

    recording = open_source(list(files) if len(files) > 1 else files[0])
    try:
        matched = lin.match_topics(topic, recording.topics, getattr(recording, "nodes", None))
        lookup = lin.from_recording(recording)
    finally:
        close = getattr(recording, "close", None)
        if close is not None:
            close()
    trees = [lin.build(t, frame_id, lookup) for t in matched]
    found = [t for t in trees if t.found]
    if fmt == "json":
        click.echo(json.dumps({"topic": topic, "frame_id": frame_id, "matched": matched,
                               "trees": [lin.to_dict(t) for t in found]}, indent=2))
    else:
        if matched != [topic]:
            click.echo(f"{topic}: node of {len(matched)} rings: {', '.join(matched)} (frame ids are per ring)")
        for tree in found:
            click.echo(lin.render_text(tree))
        missing = [t.topic for t in trees if not t.found]
        if missing:
            click.echo(f"no frame {frame_id} recorded on {', '.join(missing)}", err=True)
    if not found:
        sys.exit(1)
