"""PyEdgeTwin compatibility: model blocks written for PyEdgeTwin run unchanged on EdgeFlow (docs/twin.md).

    from pyedgetwin.models.base import ModelBlock, ModelBlockContext     # EdgeFlow's, re-exported

``pyedgetwin run -c config.yaml`` is ``edgeflow twin -c config.yaml``. Only the model interface and the
command are provided: PyEdgeTwin's runtime, sinks and connectors are EdgeFlow's nodes here.
"""

from edgeflow import __version__

__all__ = ["__version__"]
