"""``python -m pyedgetwin run -c config.yaml``: the ``pyedgetwin`` command without the console script."""

from pyedgetwin.cli import run

run()
