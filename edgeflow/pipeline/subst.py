"""``${VAR}`` substitution in pipeline files, and the secrets it brings in (never printed).

    token: ${TOKEN}                  the variable; unset is an error (an unset secret must not become "")
    port: ${PORT:-8000}              a default when it is unset or empty
    url: ${DB_URL:?set DB_URL}       unset or empty: an error with this message
    price: $${NOT_A_VAR}             "$${" is a literal "${"

A value that is one whole reference, written unquoted, is typed as YAML types it (``port: ${PORT}`` gives
an int, ``fps: ${FPS:-}`` null); quoted, or with text around it, it stays a string. Only values are
substituted, never keys.

Secrets (the rule, in one place): a substituted value is secret when the variable's name contains PASS,
TOKEN, SECRET, KEY, CREDENTIAL or AUTH (any case), or when it lands under a key that looks secret (password,
passwd, token, secret, api_key). A secret stays a string (``SecretStr``, whose ``repr`` is ``'***'``), and
every view of the app that EdgeFlow prints (``edgeflow graph`` in any format, error messages) shows ``***``
in its place (``Secrets.mask``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from edgeflow.pipeline.errors import PipelineError
from edgeflow.pipeline.tree import Map, Ref, Seq, in_file_order, problem

SECRET_NAME = re.compile(r"PASS|TOKEN|SECRET|KEY|CREDENTIAL|AUTH", re.I)
"""A variable whose name matches holds a secret."""
SECRET_KEY = re.compile(r"password|passwd|token|secret|api_key", re.I)
"""A key that the graph view masks anyway (edgeflow.graph's rule): what is substituted into it is secret."""
MASK = "***"

_TOKEN = re.compile(r"\$\$\{|\$\{([^}\n]*)\}")
_INNER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)(.*))?", re.S)
_RESOLVER = yaml.resolver.Resolver()
_TYPED = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
          "tag:yaml.org,2002:null"}


class SecretStr(str):
    """A string that came from a secret variable: an ordinary str to the code that uses it, ``'***'`` in any
    ``repr`` (so an error message that quotes the value does not show it). ``secret`` is True: a view that
    masks values can test ``getattr(value, "secret", False)`` without importing this module."""

    secret = True

    def __repr__(self) -> str:
        return repr(MASK)

    def __reduce__(self) -> tuple:
        return (SecretStr, (str(self),))


class Secrets:
    """The secret values substituted into a pipeline; ``mask`` puts ``***`` in their place."""

    def __init__(self, values: set[str] | None = None) -> None:
        self.values: set[str] = set(values or ())

    def add(self, value: str) -> None:
        """Remember a secret value (empty ones mean nothing)."""
        if value:
            self.values.add(str(value))

    def mask(self, value: Any) -> Any:
        """``value`` (a str, or dicts and lists of them) with every secret replaced by ``***``: a string equal
        to one whole, or holding one of 4 characters or more."""
        if isinstance(value, str):
            if isinstance(value, SecretStr) or value in self.values:
                return MASK
            for secret in sorted(self.values, key=len, reverse=True):
                if len(secret) >= 4 and secret in value:
                    value = value.replace(secret, MASK)
            return str(value)
        if isinstance(value, Mapping):
            return {key: self.mask(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.mask(item) for item in value]
        return value

    def __bool__(self) -> bool:
        return bool(self.values)


def substitute(tree: Map, env: Mapping[str, str]) -> tuple[Map, Secrets]:
    """Expand every reference in ``tree`` (a merged pipeline) from ``env``.

    Returns:
        A new tree (same marks) and the secrets found.

    Raises:
        PipelineError: one line per unset variable, ``:?`` message or malformed reference.
    """
    secrets, problems = Secrets(), []
    out = _walk(tree, (), env, secrets, problems, None)
    if problems:
        raise PipelineError(*in_file_order([secrets.mask(line) for line in problems]))
    return out, secrets


def _walk(value: Any, path: tuple, env: Mapping[str, str], secrets: Secrets, problems: list,
          mark: Any) -> Any:
    if isinstance(value, Map):
        out = Map(value.mark)
        for key, item in value.items():
            out.put(key, _walk(item, (*path, key), env, secrets, problems, value.where(key)),
                    value.key_marks[key], value.value_marks[key])
        return out
    if isinstance(value, Seq):
        return Seq(value.mark, [_walk(item, (*path, i), env, secrets, problems, value.where(i))
                                for i, item in enumerate(value)], value.marks)
    if isinstance(value, Ref):
        return expand(value, path, mark, env, secrets, problems)
    return value


def expand(ref: Ref, path: tuple, mark: Any, env: Mapping[str, str], secrets: Secrets,
           problems: list) -> Any:
    """One scalar with references: its value (typed, a SecretStr, or a str); problems are appended."""
    key = next((part for part in reversed(path) if isinstance(part, str)), "")
    secret = bool(SECRET_KEY.search(key))
    pieces, whole = [], False
    position = 0
    for match in _TOKEN.finditer(ref):
        pieces.append(ref[position:match.start()])
        position = match.end()
        if match.group(0) == "$${":
            pieces.append("${")
            continue
        inner = _INNER.fullmatch(match.group(1))
        if inner is None:
            problems.append(problem(mark, path, f"malformed reference {match.group(0)!r}: expected "
                                                "${NAME}, ${NAME:-default} or ${NAME:?message}"))
            return str(ref)
        name, op, arg = inner.groups()
        value = env.get(name)
        if op == ":-" and not value:
            value = arg
        elif op == ":?" and not value:
            problems.append(problem(mark, path, f"${{{name}}} is not set: {arg or 'a value is required'}"))
            value = ""
        elif value is None and op is None:
            problems.append(problem(mark, path, f"${{{name}}} is not set (set it, or give a default: "
                                                f"${{{name}:-value}})"))
            value = ""
        if SECRET_NAME.search(name):
            secret = True
        if secret:
            secrets.add(value)
        pieces.append(value)
        whole = match.span() == (0, len(ref))
    pieces.append(ref[position:])
    text = "".join(pieces)
    if secret:
        secrets.add(text)
        return SecretStr(text)
    if whole and ref.plain:
        return typed(text)
    return text


def typed(text: str) -> Any:
    """``text`` as an unquoted YAML scalar would be typed: int, float, bool, null, else the str itself."""
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))
    if tag not in _TYPED:
        return text
    return yaml.constructor.SafeConstructor().construct_object(yaml.ScalarNode(tag, text))
