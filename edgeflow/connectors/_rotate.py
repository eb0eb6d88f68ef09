"""File names from a template, and reading back the tail of a file a sink appended to (the file sinks and
VideoSink share them).

Templates: ``out/est-{start}.csv`` with ``{start}`` the UTC capture time of the file's first frame, to the
second (``20261207T101500Z``), ``{n}`` a counter (1, 2, ... one more than the highest on disk; a format spec
such as ``{n:04d}`` works) and ``{replica}`` the node replica. Placeholders are allowed in the file name only.
A rotating sink whose path has no placeholder gets ``-{n}`` before the suffix (``out/est.csv`` ->
``out/est-1.csv``). A name without ``{n}`` that is already taken (two files started within one second) gets
``-2``, ``-3`` ... before the suffix: a sink never appends to, or overwrites, a file it did not choose to
continue.

Tails: ``scan_tail`` finds where the last complete record of an append-only file ends (a write cut short by a
crash leaves a torn record after it), the file's first records (a CSV header, the first row) and the records
of its last frames. CSV records may hold quoted line breaks: a line break ends a record only outside quotes,
which the count of quote characters before it tells (an even count: outside).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import string
import time
from pathlib import Path
from typing import Any

from edgeflow.connectors._base import option_error

PLACEHOLDERS = ("start", "n", "replica")
STAMP = "%Y%m%dT%H%M%SZ"
TAIL_START = 64 * 1024          # bytes read back first; grows 4x while the last frames are not all in it
CHUNK = 1 << 20


def utc_stamp(timestamp: float) -> str:
    """``20261207T101500Z`` for a time in seconds since the epoch (a time that is not finite: now)."""
    if not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp) or timestamp < 0:
        timestamp = time.time()
    return time.strftime(STAMP, time.gmtime(timestamp))


def check_template(node: str, option: str, path: Any) -> None:
    """Refuse a path template that cannot be filled: unknown or misplaced placeholders, a bad ``{n}`` format.

    Raises:
        ConfigError: naming the node and the option.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise option_error(node, option, f"expected a file path, got {path!r}")
    text = str(path)
    folder, name = os.path.split(text)
    if not name:
        raise option_error(node, option, f"{text!r} names a folder, not a file")
    for part, where in ((folder, "folder"), (name, "name")):
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(part) if f is not None]
        except ValueError as exc:
            raise option_error(node, option, f"{text!r}: {exc} (write {{{{ and }}}} for braces)") from None
        for field, spec, conversion in fields:
            if field not in PLACEHOLDERS:
                raise option_error(node, option, f"{text!r}: unknown placeholder {{{field}}} (known: "
                                                 f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
            if where == "folder":
                raise option_error(node, option, f"{text!r}: placeholders go in the file name, not the "
                                                 "folder")
            if conversion or (spec and field != "n"):
                raise option_error(node, option, f"{text!r}: {{{field}}} takes no format or conversion")
            if spec:
                try:
                    digits = format(7, spec)
                except ValueError:
                    digits = ""
                if not digits.isdigit():
                    raise option_error(node, option, f"{text!r}: {{n:{spec}}} does not format a counter "
                                                     "as digits (e.g. {n:04d})")


class Template:
    """The names of one sink's files: the newest one on disk, and the next one to start."""

    def __init__(self, path: str | os.PathLike, *, rotating: bool, replica: int = 0) -> None:
        folder, name = os.path.split(str(path))
        name = name.replace("{replica}", str(replica))
        fields = {f for _, f, _, _ in string.Formatter().parse(name) if f}
        stem, suffix = os.path.splitext(name)
        if "{" in suffix or "}" in suffix:          # a placeholder after the last dot: part of the stem
            stem, suffix = name, ""
        if rotating and not fields:
            stem, fields = stem + "-{n}", {"n"}
        self.folder = Path(folder or ".")
        self.stem, self.suffix = stem, suffix
        self.has_start, self.has_n = "start" in fields, "n" in fields
        self.fixed = not fields                         # one file, always the same name
        self._regex = re.compile(self._pattern())

    def _pattern(self) -> str:
        out = []
        for literal, field, _, _ in string.Formatter().parse(self.stem):
            out.append(re.escape(literal))
            if field in ("start", "n"):
                digits = r"\d{8}T\d{6}Z" if field == "start" else r"\d+"
                seen = f"(?P<{field}>" in "".join(out)      # a placeholder used twice: one group
                out.append(digits if seen else f"(?P<{field}>{digits})")
        if not self.has_n:
            out.append(r"(?:-(?P<k>\d+))?")            # the suffix a taken name gets
        return "".join(out) + re.escape(self.suffix)

    def _fill(self, start: str, n: int) -> str:
        return self.stem.format(start=start, n=n) + self.suffix

    def existing(self) -> list[tuple[tuple, Path]]:
        """(sort key, path) of every file of this template on disk, oldest first."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            match = self._regex.fullmatch(name)
            if match is None:
                continue
            groups = match.groupdict()
            if self.has_n:
                key: tuple = (int(groups["n"]),)
            else:
                key = (groups.get("start") or "", int(groups.get("k") or 1))
            found.append((key, self.folder / name))
        return sorted(found)

    def newest(self) -> Path | None:
        """The file a restarted sink continues (the last one started), or None."""
        found = self.existing()
        return found[-1][1] if found else None

    def next_path(self, timestamp: float) -> Path:
        """The name of a new file whose first frame was captured at ``timestamp``; never one on disk."""
        start = utc_stamp(timestamp)
        found = self.existing()
        if self.has_n:
            n = max((key[0] for key, _ in found), default=0) + 1
            return self.folder / self._fill(start, n)
        path = self.folder / self._fill(start, 0)
        if self.fixed or not path.exists():
            return path
        k = max((key[1] for key, _ in found if key[0] == start), default=1) + 1
        return self.folder / (self.stem.format(start=start, n=0) + f"-{k}" + self.suffix)


@dataclasses.dataclass
class Tail:
    """What a sink needs to know of a file it continues."""

    good: int                       # bytes of complete records: the rest is torn and must be cut
    size: int                       # bytes on disk
    head: list[bytes]               # the first records (up to ``head`` asked), complete ones only
    last: list[bytes]               # the complete records of the end of the file, oldest first
    from_start: bool                # ``last`` starts at the file's first record (nothing before it left out)


def _record_ends(data: bytes, inside: int) -> tuple[list[int], int]:
    """Offsets in ``data`` of line breaks that end a record, given whether a CSV quote is open at its start
    (``inside``: 0 or 1); returns them and the quote state at the end."""
    if b'"' not in data:
        return ([], inside) if inside else (_newlines(data), 0)
    ends = []
    for match in re.finditer(rb'["\n]', data):
        if match.group() == b'"':
            inside ^= 1
        elif not inside:
            ends.append(match.start())
    return ends, inside


def scan_tail(path: str | os.PathLike, *, quoted: bool, head: int, enough) -> Tail:
    """Read back an append-only file of newline-ended records (``quoted``: CSV, where quoted fields may hold
    line breaks). ``enough(records)`` says whether the records read from the end hold every frame wanted;
    the window read back grows until it does or holds the whole file."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        heads, offset, inside = [], 0, 0
        while len(heads) < head and offset < size:      # the first records, whole
            file.seek(offset)
            data, complete = b"", False
            while not complete:
                more = file.read(CHUNK)
                if not more:
                    break
                ends, state = _record_ends(more, inside) if quoted else (_newlines(more), 0)
                complete = bool(ends)
                data, inside = data + (more[:ends[0] + 1] if ends else more), state
            if not complete:
                break                                   # torn: no complete record here
            heads.append(data)
            offset, inside = offset + len(data), 0
        window = TAIL_START
        while True:
            begin = max(0, size - window)
            inside = _quotes_before(file, begin) % 2 if quoted else 0
            file.seek(begin)
            data = file.read(size - begin)
            ends, _ = _record_ends(data, inside) if quoted else (_newlines(data), 0)
            good = begin + ends[-1] + 1 if ends else None
            if good is None and begin > 0:
                window *= 4                             # one record longer than the window
                continue
            good = good or 0
            cuts = [-1] + ends if begin == 0 else ends
            records = [data[a + 1:b + 1] for a, b in zip(cuts, cuts[1:])]
            if begin == 0 or enough(records):
                return Tail(good=good, size=size, head=heads, last=records, from_start=begin == 0)
            window *= 4


def _newlines(data: bytes) -> list[int]:
    ends, pos = [], data.find(b"\n")
    while pos >= 0:
        ends.append(pos)
        pos = data.find(b"\n", pos + 1)
    return ends


def _quotes_before(file, offset: int) -> int:
    """Quote characters in the first ``offset`` bytes of the file."""
    file.seek(0)
    count, left = 0, offset
    while left > 0:
        chunk = file.read(min(CHUNK, left))
        if not chunk:
            break
        count += chunk.count(b'"')
        left -= len(chunk)
    return count
