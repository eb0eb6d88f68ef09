"""Whole-graph checks: every Graph passes these before the runtime may start it.

Works on anything with NodeSpec's ``name``/``kind`` and EdgeSpec's ``source``/``target``/``channel``, so it
does not import edgeflow.graph. Each failure is one GraphError line naming the node or link it concerns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeflow._nodeload import did_you_mean
from edgeflow.errors import GraphError


def check_graph(app: str, nodes: Sequence[Any], edges: Sequence[Any], fed_later: Sequence[str] = ()) -> None:
    """Raise GraphError for the first problem found, in this order: no nodes, a duplicate node, a bad link
    (unknown node, into a producer, out of a sink, duplicate), a cycle, a fusion node with fewer than two
    inputs, a node no producer reaches (``fed_later``: nodes streams activated at run time will feed, e.g. a
    stream template's gateway, count as reached)."""
    if not nodes:
        raise GraphError(f"app {app!r}: no nodes registered")
    kinds: dict[str, str] = {}
    for node in nodes:
        if node.name in kinds:
            raise GraphError(f"node {node.name!r}: duplicate node name", node=node.name)
        kinds[node.name] = node.kind
    _check_links(kinds, edges)
    if cycle := find_cycle(list(kinds), edges):
        raise GraphError("cycle: " + " -> ".join(cycle), node=cycle[0], link=(cycle[-2], cycle[-1]))
    _check_fusion_inputs(kinds, edges)
    unknown = [name for name in fed_later if name not in kinds]
    if unknown:
        hint = did_you_mean(unknown[0], list(kinds))
        raise GraphError(f"streams(): to={unknown[0]!r} is not a node of app {app!r}{hint}", node=unknown[0])
    _check_reachable(kinds, edges, fed_later)


def _check_links(kinds: dict[str, str], edges: Sequence[Any]) -> None:
    seen = set()
    for edge in edges:
        link = (edge.source, edge.target)
        text = f"link {edge.source} -> {edge.target}"
        for end in link:
            if end not in kinds:
                raise GraphError(f"{text}: unknown node {end!r}{did_you_mean(end, kinds)}",
                                 node=end, link=link)
        if kinds[edge.target] == "producer":
            raise GraphError(f"{text}: {edge.target!r} is a producer and takes no inputs",
                             node=edge.target, link=link)
        if kinds[edge.source] == "sink":
            raise GraphError(f"{text}: {edge.source!r} is a sink and has no outputs",
                             node=edge.source, link=link)
        if (*link, edge.channel) in seen:
            channel = f" on channel {edge.channel!r}" if edge.channel is not None else ""
            raise GraphError(f"{text}: duplicate link{channel}", link=link)
        seen.add((*link, edge.channel))


def find_cycle(names: Sequence[str], edges: Sequence[Any]) -> list[str] | None:
    """The first cycle found, as ``[a, b, a]``, or None (deterministic: nodes, then edges, in order)."""
    successors: dict[str, list[str]] = {name: [] for name in names}
    for edge in edges:
        successors[edge.source].append(edge.target)
    state: dict[str, bool] = {}           # False: on the current path, True: finished
    for root in names:
        if root in state:
            continue
        path, pending = [root], [iter(successors[root])]
        state[root] = False
        while path:                       # iterative DFS: a long chain must not hit the recursion limit
            nxt = next(pending[-1], None)
            if nxt is None:
                state[path.pop()] = True
                pending.pop()
            elif state.get(nxt) is False:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = False
                path.append(nxt)
                pending.append(iter(successors[nxt]))
    return None


def _check_fusion_inputs(kinds: dict[str, str], edges: Sequence[Any]) -> None:
    for name, kind in kinds.items():
        count = sum(1 for edge in edges if edge.target == name)
        if kind == "fusion" and count < 2:
            raise GraphError(f"node {name!r}: a fusion node needs at least two inputs, got {count}",
                             node=name)


def _check_reachable(kinds: dict[str, str], edges: Sequence[Any], fed_later: Sequence[str] = ()) -> None:
    reached = {name for name, kind in kinds.items() if kind == "producer"} | set(fed_later)
    frontier = list(reached)
    while frontier:
        source = frontier.pop()
        for edge in edges:
            if edge.source == source and edge.target not in reached:
                reached.add(edge.target)
                frontier.append(edge.target)
    missing = [name for name in kinds if name not in reached]
    if not missing:
        return
    # The graph is acyclic here, so walking inputs backwards from any unreached node ends at one with no
    # inputs: that node is the cause, the others only follow from it.
    fed = {edge.target for edge in edges}
    root = next(name for name in missing if name not in fed)
    others = [name for name in missing if name != root]
    also = f"; also unreached: {', '.join(map(repr, others))}" if others else ""
    raise GraphError(f"node {root!r}: no path from any producer (it has no inputs){also}", node=root)


def topological_order(names: Sequence[str], edges: Sequence[Any]) -> list[str]:
    """Names so that every link goes forward; ties keep registration order (Kahn's algorithm)."""
    indegree = {name: 0 for name in names}
    for edge in edges:
        indegree[edge.target] += 1
    order: list[str] = []
    ready = [name for name in names if indegree[name] == 0]
    while ready:
        name = ready.pop(0)
        order.append(name)
        for edge in edges:
            if edge.source == name:
                indegree[edge.target] -= 1
                if indegree[edge.target] == 0:
                    ready.append(edge.target)
        ready.sort(key=list(names).index)
    return order
