"""PipelineError: what is wrong with a pipeline file, one line per problem, each naming where it is."""

from __future__ import annotations

from edgeflow.errors import GraphError


class PipelineError(GraphError):
    """A pipeline file is invalid; raised before anything starts.

    Each problem is one line ``file:line:column: key.path: what is wrong`` (``pipeline.yaml:12:5:
    nodes.detector.replicas: expected an integer >= 1, got 'two'``); ``str(exc)`` is those lines joined by
    newlines (the first is the one that stopped a graph check). A GraphError, so code that catches the Python
    API's graph errors (cycles, unknown nodes) catches these too.

    Attributes:
        problems: the lines. node, link: as GraphError's, when a graph check found the problem.
    """

    def __init__(self, *problems: str, node: str | None = None, link: tuple[str, str] | None = None) -> None:
        super().__init__("\n".join(problems), node=node, link=link)
        self.problems = list(problems)
