"""Kubernetes deployment of an EdgeFlow app.

- ``manifests``: Graph -> Kubernetes objects as dicts (pure);
- ``render``: dicts -> YAML files in the output folder (``k8s/``);
- ``dockerfile``: the project's image (generated Dockerfile, content-derived tag);
- ``kubectl``: the only module that runs ``kubectl`` or ``docker``.

``edgeflow deploy`` (edgeflow/cli/deploy.py) strings them together.
"""
