"""PyEdgeTwin's ``pyedgetwin.models.base``: ``ModelBlock`` and ``ModelBlockContext`` are EdgeFlow's
(``edgeflow.models``), so a model file that imports them from here runs unchanged, hot reload included.

The context takes PyEdgeTwin's arguments ``ModelBlockContext(asset_id, twin_id, model_version, config)`` (by
position, or ``model_version=`` by name) for a model's own unit tests.
"""

from edgeflow.models import ModelBlock, ModelBlockContext

__all__ = ["ModelBlock", "ModelBlockContext"]
