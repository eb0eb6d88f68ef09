"""``python -m edgeflow.cli``: the same as the ``edgeflow`` console script."""

from edgeflow.cli import main

if __name__ == "__main__":
    main()
