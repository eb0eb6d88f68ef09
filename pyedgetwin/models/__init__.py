"""PyEdgeTwin's ``pyedgetwin.models``: the model block interface (EdgeFlow's ``edgeflow.models``)."""

from pyedgetwin.models.base import ModelBlock, ModelBlockContext

__all__ = ["ModelBlock", "ModelBlockContext"]
