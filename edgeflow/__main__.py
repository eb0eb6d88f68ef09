"""``python -m edgeflow ...``: the ``edgeflow`` command (as the original EdgeFlow's ``python -m edgeflow``)."""

from edgeflow.cli import main

if __name__ == "__main__":
    main()
