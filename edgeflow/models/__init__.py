"""Model blocks: a user's model class run as a node, with hot reload (issue 14, docs/models.md).

    from edgeflow.models import ModelBlock, ModelBlockContext, ModelNode, model_node, node_for

``ModelBlock`` is what a user subclasses (``init(context)``, ``process(msg)``, ``shutdown()``);
``ModelNode`` is the consumer node that runs one (option ``model="package.module:Class"``); ``model_node``
and ``node_for`` turn a class or a configuration's mapping into ``(ModelNode, options)`` for ``app.node``.
"""

from edgeflow.models.block import ModelBlock, ModelBlockContext
from edgeflow.models.loader import ModelLoadError
from edgeflow.models.node import META_KEY, ModelNode
from edgeflow.models.spec import model_node, node_for

__all__ = ["ModelBlock", "ModelBlockContext", "ModelNode", "ModelLoadError", "model_node", "node_for",
           "META_KEY"]
