"""Several pipeline files as one (``-c base.yaml -c site.yaml``): later files win, for fleets.

The rule: mappings merge key by key, at every depth (a site file that says
``nodes: {detector: {options: {threshold: 0.7}}}`` changes that one option and keeps the rest); anything
else (a scalar, a list such as ``links``) is replaced whole by the later file's value. ``nodes: {name: null}``
removes a node the earlier files defined. Every value keeps the mark of the file it came from, so an error
names the file that wrote the bad value, and a ``class:`` or ``path:`` resolves against the folder of the
file that wrote it.

Merging happens before ``${VAR}`` substitution: the merged document is still what the files said, which is
what ``edgeflow graph -c base.yaml -c site.yaml --format yaml`` writes out.
"""

from __future__ import annotations

from typing import Any

from edgeflow.pipeline.tree import Map, Seq


def merge(trees: list[Map]) -> Map:
    """The files' trees merged, first to last (a single tree comes back as it is)."""
    if not trees:
        raise ValueError("merge() needs at least one tree")
    out = trees[0]
    for tree in trees[1:]:
        out = _merge(out, tree, top=True)
    return out


def _merge(base: Map, over: Map, top: bool = False) -> Map:
    out = Map(base.mark)
    for key, value in base.items():
        out.put(key, value, base.key_marks[key], base.value_marks[key])
    for key, value in over.items():
        old = out.get(key)
        if top and key == "nodes" and isinstance(old, Map) and isinstance(value, Map):
            value = _merge_nodes(old, value)
        elif isinstance(old, Map) and isinstance(value, Map):
            value = _merge(old, value)
        out.put(key, value, over.key_marks[key], over.value_marks[key])
    return out


def _merge_nodes(base: Map, over: Map) -> Map:
    out = _merge(base, over)
    for key, value in over.items():
        if value is None:                        # "name: null" in a later file: the node is gone
            del out[key]
            out.key_marks.pop(key, None)
            out.value_marks.pop(key, None)
    return out


def copy(value: Any) -> Any:
    """A deep copy of a tree (marks kept): merged trees share subtrees with the files they came from."""
    if isinstance(value, Map):
        out = Map(value.mark)
        for key, item in value.items():
            out.put(key, copy(item), value.key_marks[key], value.value_marks[key])
        return out
    if isinstance(value, Seq):
        return Seq(value.mark, [copy(item) for item in value], value.marks)
    return value
