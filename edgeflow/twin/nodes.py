"""The nodes of a twin pipeline that EdgeFlow has no general-purpose equivalent of.

``TwinModel``: a ModelNode whose every output record starts with ``asset_id``, ``twin_id`` and
``model_version``, as PyEdgeTwin's sink records do (so the sinks can tag by them). ``Columns``: the
``sinks.csv.columns`` selection, a node of its own in front of the CsvSink. ``StdoutSink``: PyEdgeTwin's
``stdout`` sink, one JSON line per record.

Imported by the node processes: nothing here imports the graph or the runtime.
"""

from __future__ import annotations

import json
import sys
from typing import Any, ClassVar

from edgeflow.connectors._base import option_error, unknown_options
from edgeflow.connectors._rows import plain
from edgeflow.models import META_KEY, ModelNode
from edgeflow.nodes.base import ConsumerNode, SinkNode

IDENTITY = ("asset_id", "twin_id", "model_version")


class TwinModel(ModelNode):
    """A model block run as PyEdgeTwin runs it: ``asset_id``, ``twin_id`` and ``model_version`` (the version
    that made it) come first in every output record; a field of the same name the model returns wins.

    Guarantee: each input message is processed by exactly one model version, across any number of reloads.
    """

    def process(self, data: Any) -> Any:
        """The model's output, each record with its identity first."""
        result = super().process(data)
        if not isinstance(result, tuple):
            return result
        records, meta = result
        ids = {"asset_id": self.asset_id, "twin_id": self.twin_id, "model_version": meta.get(META_KEY)}
        if isinstance(records, dict):
            return {**ids, **records}, meta
        return [{**ids, **r} if isinstance(r, dict) else r for r in records], meta


class Columns(ConsumerNode):
    """Keeps the named fields of each record, in that order (a missing one as an empty value): the CSV
    sink's ``columns``. The frame's own columns (frame_id, topic, timestamp) are the CsvSink's and always come
    first; naming them here changes nothing.

    Guarantee: one output record per input record, in order (its link from the model is DURABLE).
    """

    FRAME: ClassVar[tuple] = ("frame_id", "topic", "timestamp")
    columns: Any = None

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """``columns``: a list of field names."""
        unknown_options(name, options, ("columns",))
        columns = options.get("columns")
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            raise option_error(name, "columns", f"expected a list of field names, got {columns!r}")

    def setup(self) -> None:
        self._keep = [c for c in self.columns if c not in self.FRAME]

    def process(self, data: Any) -> Any:
        """The record with only the kept fields."""
        if isinstance(data, list):
            return [self._pick(item) for item in data]
        return self._pick(data if isinstance(data, dict) else {"data": data})

    def _pick(self, record: Any) -> Any:
        if not isinstance(record, dict):
            return record
        return {key: plain(record.get(key), key) for key in self._keep}


class StdoutSink(SinkNode):
    """Prints every record as one JSON line (PyEdgeTwin's ``stdout`` sink): ``pretty`` indents it,
    ``include_fields`` keeps only those fields, ``exclude_fields`` leaves those out.

    Guarantee: every record received is written to stdout and flushed before its frame is acknowledged (at
    least once across a restart of the sink).
    """

    OPTIONS: ClassVar[tuple] = ("pretty", "include_fields", "exclude_fields")
    pretty: bool = False
    include_fields: Any = None
    exclude_fields: Any = None

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """The three options, if given."""
        unknown_options(name, options, cls.OPTIONS)
        for key in ("include_fields", "exclude_fields"):
            value = options.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise option_error(name, key, f"expected a list of field names, got {value!r}")

    def setup(self) -> None:
        self._include = set(self.include_fields) if self.include_fields else None
        self._exclude = set(self.exclude_fields or ())

    def consume(self, data: Any) -> None:
        """One line per record (a list message: one per item)."""
        for record in data if isinstance(data, list) else [data]:
            record = record if isinstance(record, dict) else {"data": record}
            shown = {k: v for k, v in record.items()
                     if (self._include is None or k in self._include) and k not in self._exclude}
            sys.stdout.write(json.dumps(plain(shown), indent=2 if self.pretty else None, default=str) + "\n")
        sys.stdout.flush()
