"""A sink writing one CSV line per frame (frame_id, timestamp, mean); at the end it says if any was missing.

Its link is DURABLE, so a missing frame would be a bug, not a slow logger.
"""
import csv
from pathlib import Path

from edgeflow import SinkNode


def describe(missing):
    """'none', or how many and the first few ids."""
    if not missing:
        return "none"
    shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
    return f"{len(missing)} ({shown})"


class Logger(SinkNode):
    path = "folder_style_log.csv"           # node.toml's [config] or main.py's --log overrides it

    def setup(self):
        self.ids = []
        self.file = Path(self.path).open("w", newline="")     # relative: to the directory the app runs in
        self.writer = csv.writer(self.file)
        self.writer.writerow(["frame_id", "timestamp", "mean"])

    def consume(self, data):
        frame = self.current_frame
        self.ids.append(frame.frame_id)
        self.writer.writerow([frame.frame_id, f"{frame.timestamp:.6f}", f"{data.mean():.3f}"])

    def teardown(self):
        self.file.close()
        missing = sorted(set(range(1, max(self.ids, default=0) + 1)) - set(self.ids))
        print(f"logger: {len(self.ids)} frames, {describe(missing)} missing -> {Path(self.path).resolve()}",
              flush=True)
