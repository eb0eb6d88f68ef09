"""Reading a pipeline file into plain Python values that remember where each one was written.

PyYAML composes the document (``yaml.compose``: nodes with start marks, nothing constructed yet); this module
walks the nodes into ``Map`` (a dict) and ``Seq`` (a list) that carry the file, line and column of every key
and value, so a later check can say ``pipeline.yaml:12:5: nodes.detector.replicas: ...``. A JSON file is
read the same way (JSON is YAML's flow style), after ``json`` itself has checked its syntax, and its numbers
are typed as JSON types them.

``${VAR}`` references are not valid YAML inside a flow collection (``{token: ${TOKEN}}``: the braces are
indicators), so before composing, every reference's ``${``, ``:`` and ``}`` are swapped for private-use
characters of the same length (lines and columns stay put) and swapped back in each scalar. A scalar holding
a reference comes back as a ``Ref`` (a str that remembers whether it was plain, unquoted, YAML): see subst.py.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import yaml

from edgeflow.pipeline.errors import PipelineError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)     # libyaml when built: faster, and tab-tolerant
_OPEN, _COLON, _CLOSE = "\ue000", "\ue001", "\ue002"          # private-use: never in a real pipeline file
_REFERENCE = re.compile(r"(?<!\$)\$\{([^}\n]*)\}")           # "$${" is the escape of a literal "${"
_BACK = str.maketrans({_OPEN: "{", _COLON: ":", _CLOSE: "}"})


@dataclass(frozen=True)
class Mark:
    """Where something was written: the file as the user named it, 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Map(dict):
    """A mapping of the file: a dict, plus ``mark`` (where it starts), ``key_marks`` and ``value_marks``."""

    def __init__(self, mark: Mark, *args: Any) -> None:
        super().__init__(*args)
        self.mark = mark
        self.key_marks: dict[str, Mark] = {}
        self.value_marks: dict[str, Mark] = {}

    def put(self, key: str, value: Any, key_mark: Mark, value_mark: Mark) -> None:
        """Set ``key`` with the marks of the key and of its value."""
        self[key] = value
        self.key_marks[key] = key_mark
        self.value_marks[key] = value_mark

    def where(self, key: str) -> Mark:
        """The mark of ``key`` (the mapping's own when the key is absent)."""
        return self.key_marks.get(key, self.mark)


class Seq(list):
    """A sequence of the file: a list, plus ``mark`` and one mark per item (``marks``)."""

    def __init__(self, mark: Mark, items: list | None = None, marks: list[Mark] | None = None) -> None:
        super().__init__(items or [])
        self.mark = mark
        self.marks: list[Mark] = list(marks or [])

    def where(self, index: int) -> Mark:
        """The mark of item ``index``."""
        return self.marks[index] if 0 <= index < len(self.marks) else self.mark


class Ref(str):
    """A scalar that holds a ``${VAR}`` reference, before substitution. ``plain``: it was written unquoted,
    so a value that is one whole reference is typed as YAML would type it (``port: ${PORT}`` is an int)."""

    plain: bool = False

    def __new__(cls, text: str, plain: bool) -> Ref:
        value = super().__new__(cls, text)
        value.plain = plain
        return value

    def __reduce__(self) -> tuple:
        return (Ref, (str(self), self.plain))


def hide_references(text: str) -> str:
    """``text`` with each reference's ``${``, ``:`` and ``}`` swapped for private characters of one
    character each (so marks keep their columns)."""
    def swap(match: re.Match) -> str:
        return "$" + _OPEN + match.group(1).replace(":", _COLON) + _CLOSE
    return _REFERENCE.sub(swap, text)


def read(path: str | os.PathLike, shown: str | None = None) -> Map:
    """Read one YAML or JSON pipeline file into a ``Map``.

    Args:
        path: the file. shown: how messages name it (default: ``path`` as given).

    Raises:
        PipelineError: the file is missing, not valid YAML/JSON, holds several documents, a duplicate key, a
            tag other than YAML's standard ones, or is not a mapping at its top.
    """
    shown = str(path) if shown is None else shown
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise PipelineError(f"{shown}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    is_json = str(path).lower().endswith(".json")
    if is_json:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise PipelineError(f"{shown}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    try:
        node = yaml.compose(hide_references(text), Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark is not None else shown
        problem = " ".join(str(exc.problem or exc.context or exc).split()).translate(_BACK)
        raise PipelineError(f"{where}: invalid {'JSON' if is_json else 'YAML'}: {problem}") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{shown}: invalid YAML: {' '.join(str(exc).split())}") from None
    if node is None:
        raise PipelineError(f"{shown}:1:1: the file is empty (expected a mapping with app, nodes and links)")
    value = _Walker(shown, is_json).walk(node)
    if not isinstance(value, Map):
        raise PipelineError(f"{_mark(shown, node)}: expected a mapping with app, nodes and links at the top, "
                            f"got a {_kind(value)}")
    return value


def _mark(shown: str, node: yaml.Node) -> Mark:
    return Mark(shown, node.start_mark.line + 1, node.start_mark.column + 1)


def _kind(value: Any) -> str:
    return {Map: "mapping", Seq: "list"}.get(type(value), type(value).__name__)


class _Walker:
    """Composed nodes -> Map / Seq / Python scalars with marks (one per file)."""

    def __init__(self, shown: str, is_json: bool) -> None:
        self.shown = shown
        self.is_json = is_json
        self.constructor = yaml.constructor.SafeConstructor()

    def walk(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if isinstance(node, yaml.SequenceNode):
            return Seq(_mark(self.shown, node), [self.walk(item) for item in node.value],
                       [_mark(self.shown, item) for item in node.value])
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode) -> Map:
        try:
            self.constructor.flatten_mapping(node)           # YAML merge keys ("<<: *base")
        except yaml.MarkedYAMLError as exc:
            raise PipelineError(f"{_mark(self.shown, node)}: {exc.problem}") from None
        out = Map(_mark(self.shown, node))
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise PipelineError(f"{_mark(self.shown, key_node)}: a key must be a plain name, "
                                    "not a mapping or a list")
            key = str(self._scalar(key_node))
            if key in out:
                first = out.key_marks[key]
                raise PipelineError(f"{_mark(self.shown, key_node)}: duplicate key {key!r} (first at line "
                                    f"{first.line})")
            out.put(key, self.walk(value_node), _mark(self.shown, key_node), _mark(self.shown, value_node))
        return out

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        text = node.value
        if _OPEN in text or _CLOSE in text or "$${" in text:
            return Ref(text.translate(_BACK), plain=not node.style)     # libyaml says '' for plain
        if self.is_json and not node.style:
            try:
                return json.loads(text)                      # JSON's numbers (1e5 is a float), true, null
            except ValueError:
                pass
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise PipelineError(f"{_mark(self.shown, node)}: {' '.join(str(exc.problem).split())}") from None


def dotted(path: tuple) -> str:
    """A key path for messages: ``("nodes", "db", "options", "table")`` -> ``nodes.db.options.table``, a list
    index as ``links[2]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problem(mark: Mark, path: tuple, message: str) -> str:
    """One problem line: ``file:line:col: key.path: message``."""
    return f"{mark}: {dotted(path)}: {message}" if path else f"{mark}: {message}"


_WHERE = re.compile(r"(.*?):(\d+):(\d+): ")


def in_file_order(lines: list[str]) -> list[str]:
    """Problem lines sorted by line and column within each file (files in the order they first appear)."""
    files: dict[str, int] = {}

    def key(line: str) -> tuple:
        match = _WHERE.match(line)
        if match is None:
            return (len(files) + 1, 0, 0)
        index = files.setdefault(match.group(1), len(files))
        return (index, int(match.group(2)), int(match.group(3)))
    return sorted(lines, key=key)
