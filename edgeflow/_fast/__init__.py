"""EdgeFlow's compiled core: the shared-memory ring and the slop matcher.

This package knows bytes, slots, sequence numbers and nanoseconds, nothing of nodes, topics or Redis.
"""

try:
    from edgeflow._fast import ring  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the extension
    raise ImportError(
        "EdgeFlow's compiled core is not built: run `pip install -e .` in the source checkout "
        f"({exc})") from exc
