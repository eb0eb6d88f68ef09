"""The stream API's schemas: one source of truth for checking request bodies and for the OpenAPI description.

``validate(STREAM_CREATE, body)`` checks a decoded JSON body against the small JSON Schema subset used here
(type, nullable, enum, properties, required, additionalProperties, anyOf, minLength, maxLength, pattern,
minimum, maximum, maxProperties, and two extensions: ``x-max-depth`` nesting levels and ``x-max-bytes`` of the
value as JSON) and raises ``Invalid`` with one line naming the field. ``openapi()`` is the OpenAPI 3.0
document ``/api/openapi.json`` serves, built from the same dicts, so what the description promises is what the
server checks.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from edgeflow.config import did_you_mean

MAX_BODY = 64 * 1024            # bytes of a request body, refused (413) before it is decoded
MAX_NAME = 200
MAX_URL = 2048
MAX_PARAMS_BYTES = 16 * 1024    # params as JSON: they travel in control messages and node options
MAX_PARAMS_DEPTH = 8
MAX_PARAMS_KEYS = 64
PRINTABLE = "^[^\\u0000-\\u001f\\u007f]+$"     # no control characters (valid in Python and ECMA regexes)
STATES = ["stopped", "starting", "running", "restarting", "failed", "finished"]
SOURCE_STATES = ["connecting", "live", "lost", "ended"]


class Invalid(ValueError):
    """A request body the schema refuses: ``str()`` is one line naming the field; ``field`` the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": PRINTABLE,
         "description": "What the stream is called (shown on the dashboard).", "example": "gate-3"}
_URL = {"type": "string", "minLength": 1, "maxLength": MAX_URL, "pattern": PRINTABLE,
        "description": "What the stream's source opens (its `url` option): an RTSP URL, a file, ...",
        "example": "rtsp://10.0.0.7:8554/live"}
_PARAMS = {"type": "object", "maxProperties": MAX_PARAMS_KEYS, "additionalProperties": True,
           "x-max-depth": MAX_PARAMS_DEPTH, "x-max-bytes": MAX_PARAMS_BYTES,
           "description": "Free JSON object for the stream's workers (their `params` option, changed live by "
                          f"PUT). At most {MAX_PARAMS_KEYS} keys, {MAX_PARAMS_DEPTH} levels, "
                          f"{MAX_PARAMS_BYTES // 1024} KiB as JSON.",
           "example": {"grid_size": 16, "threshold": 1.0}}
_GRID = {"type": "integer", "minimum": 1, "maximum": 4096,
         "description": "Seed compatibility: stored as `params.grid_size`.", "example": 16}
_THRESHOLD = {"type": "number", "minimum": -1e12, "maximum": 1e12,
              "description": "Seed compatibility: stored as `params.threshold`.", "example": 1.0}
_FIELDS = {"name": _NAME, "url": _URL,
           "rtsp_url": {**_URL, "description": "The seed's name for `url` (give one of them; both: equal)."},
           "params": _PARAMS, "grid_size": _GRID, "threshold": _THRESHOLD}

STREAM_CREATE: dict = {
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {**_FIELDS, "is_active": {"type": "boolean", "default": False,
                                            "description": "true: activate it at once (its workers start)."}},
    "anyOf": [{"required": ["url"]}, {"required": ["rtsp_url"]}],
    "x-anyOf-error": "url: required (or rtsp_url, the seed's name for it)", "x-anyOf-field": "url",
    "example": {"name": "gate-3", "rtsp_url": "rtsp://10.0.0.7:8554/live", "grid_size": 16, "threshold": 1.0,
                "is_active": True}}
STREAM_UPDATE: dict = {
    "type": "object", "additionalProperties": False,
    "properties": {**_FIELDS, "is_active": {"type": "boolean",
                                            "description": "Activate or deactivate it as well."}},
    "description": "Any subset of the fields: those given replace the stored ones (`params` as a whole; "
                   "`grid_size` and `threshold` go into it). An active stream gets new params without a "
                   "restart, a new url with one.",
    "example": {"threshold": 2.5}}
_DATE = {"type": "string", "format": "date-time", "example": "2024-05-01T12:00:00.123456Z"}
STREAM: dict = {
    "type": "object",
    "required": ["id", "name", "url", "rtsp_url", "params", "is_active", "worker_state", "created_at",
                 "updated_at"],
    "properties": {
        "id": {"type": "string", "format": "uuid", "description": "Made by the server."},
        "name": _NAME, "url": _URL, "rtsp_url": {**_URL, "description": "The same as `url` (for the seed's "
                                                                        "clients)."},
        "params": {"type": "object", "additionalProperties": True},
        "grid_size": {"description": "`params.grid_size`, or null."},
        "threshold": {"description": "`params.threshold`, or null."},
        "is_active": {"type": "boolean"},
        "worker_state": {"type": "string", "enum": STATES,
                         "description": "The runtime's state of its workers; `stopped` while inactive, "
                                        "`failed` when activating it failed (see `error`)."},
        "source_state": {"type": "string", "enum": SOURCE_STATES, "nullable": True,
                         "description": "What its source says of its input (null: nothing yet)."},
        "worker_started_at": {**_DATE, "nullable": True},
        "fps": {"type": "number", "nullable": True, "description": "Frames per second reaching the gateway."},
        "nodes": {"type": "array", "items": {"type": "string"}},
        "topics": {"type": "array", "items": {"type": "string"}},
        "error": {"type": "string", "nullable": True, "description": "Why its last activation failed."},
        "created_at": _DATE, "updated_at": _DATE}}
ERROR: dict = {"type": "object", "required": ["error", "status"],
               "properties": {"error": {"type": "string",
                                        "description": "One line: what is wrong and where."},
                              "status": {"type": "integer"},
                              "field": {"type": "string", "description": "The body field it is about."}}}


# -- checking ------------------------------------------------------------------------------------------------
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}
_KIND_TEXT = {"object": "a JSON object", "array": "an array", "string": "a string",
              "boolean": "true or false", "integer": "an integer", "number": "a number"}


def _is(kind: str, value: Any) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _has_surrogate(value: Any) -> bool:
    """A lone surrogate (``"\\ud800"`` in JSON) decodes to a str no UTF-8 database can store."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def validate(schema: dict, value: Any, field: str | None = None) -> None:
    """Check ``value`` against ``schema`` (see the module docstring).

    Raises:
        Invalid: one line naming the field (``name: expected a string of 1-200 characters, got 5``).
    """
    where = f"{field}: " if field else ""
    if value is None:
        if schema.get("nullable"):
            return
        if "type" in schema:
            raise Invalid(f"{where}expected {_KIND_TEXT[schema['type']]}, got null", field)
    kind = schema.get("type")
    if kind is not None and not _is(kind, value):
        raise Invalid(f"{where}expected {_kind_phrase(schema)}, got {_shown(value)}", field)
    if kind == "string" and _has_surrogate(value):
        raise Invalid(f"{where}not valid Unicode (a lone surrogate)", field)
    if "enum" in schema and value not in schema["enum"]:
        raise Invalid(f"{where}expected one of {', '.join(map(str, schema['enum']))}, got {_shown(value)}",
                      field)
    if kind == "string":
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            raise Invalid(f"{where}expected {_kind_phrase(schema)}, got {len(value)} characters", field)
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise Invalid(f"{where}control characters are not allowed", field)
    if kind in ("integer", "number"):
        if value != value or value in (float("inf"), float("-inf")):
            raise Invalid(f"{where}expected a finite number", field)
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            raise Invalid(f"{where}expected {_kind_phrase(schema)}, got {_shown(value)}", field)
    if isinstance(value, dict) and kind in ("object", None):     # a bare {"required": [...]} of an anyOf too
        _validate_object(schema, value, field)


def _validate_object(schema: dict, value: dict, field: str | None) -> None:
    where = f"{field}: " if field else ""
    props = schema.get("properties", {})
    if schema.get("additionalProperties", True) is False:
        for key in value:
            if key not in props:
                at = f"{field}.{key}" if field else str(key)
                raise Invalid(f"{at}: unknown field{did_you_mean(str(key), props)} (known: "
                              f"{', '.join(props)})", at)
    for key in schema.get("required", ()):
        if key not in value:
            raise Invalid(f"{field + '.' if field else ''}{key}: required", key)
    if "anyOf" in schema and not any(_passes(alt, value) for alt in schema["anyOf"]):
        raise Invalid(schema.get("x-anyOf-error", f"{where}matches none of the allowed forms"),
                      schema.get("x-anyOf-field", field))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise Invalid(f"{where}at most {schema['maxProperties']} keys, got {len(value)}", field)
    if "x-max-depth" in schema and _depth(value) > schema["x-max-depth"]:
        raise Invalid(f"{where}nested more than {schema['x-max-depth']} levels deep", field)
    if "x-max-bytes" in schema:
        if _has_surrogate(value):
            raise Invalid(f"{where}not valid Unicode (a lone surrogate)", field)
        size = len(json.dumps(value, ensure_ascii=True, separators=(",", ":")))
        if size > schema["x-max-bytes"]:
            raise Invalid(f"{where}{size} bytes as JSON; at most {schema['x-max-bytes']}", field)
    for key, sub in props.items():
        if key in value:
            validate(sub, value[key], f"{field}.{key}" if field else key)


def _passes(schema: dict, value: Any) -> bool:
    try:
        validate(schema, value)
    except Invalid:
        return False
    return True


def _kind_phrase(schema: dict) -> str:
    kind = schema.get("type")
    text = _KIND_TEXT.get(kind, "a value")
    if kind == "string" and ("minLength" in schema or "maxLength" in schema):
        text += f" of {schema.get('minLength', 0)}-{schema.get('maxLength', '...')} characters"
    if kind in ("integer", "number") and ("minimum" in schema or "maximum" in schema):
        text += f" from {schema.get('minimum', '-inf'):g} to {schema.get('maximum', 'inf'):g}"
    return text


# -- the OpenAPI description ---------------------------------------------------------------------------------
def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/"
                                                                                           "schemas/Error"}}}}


def _stream(description: str, status: str = "200") -> dict:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Stream"}}}}}


_AUTH = {"401": _error("The gateway has a token and the request did not carry it.")}
_BODY_ERRORS = {"400": _error("The body is not JSON."), "413": _error(f"The body is over {MAX_BODY} bytes."),
                "415": _error("The body is not `application/json`."),
                "422": _error("A field is wrong: `error` names it, `field` too.")}
_RUN_ERRORS = {"409": _error("The app cannot run it: it declares no stream template (`app.streams(...)`)."),
               "501": _error("This gateway runs without a supervisor (a `--node` run): no streams."),
               "502": _error("The runtime refused it (the reason is in `error`)."),
               "504": _error("The runtime did not answer in time.")}
_STORE = {"503": _error("The stream store cannot be reached (the reason is in `error`).")}
_REFUSED = {"400": _error("Its url or params were refused by the node classes' option checks.")}
_NOT_FOUND = {"404": _error("No stream has this id.")}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"},
       "description": "The stream's id."}


_BY_ID = ("getStream", "updateStream", "deleteStream", "activateStream", "deactivateStream")


def _links(response: dict) -> dict:
    """A created stream's response with a link to each operation on its id (clients and tools follow them)."""
    for answer in response.values():
        answer["links"] = {op: {"operationId": op, "parameters": {"id": "$response.body#/id"}}
                           for op in _BY_ID}
    return response


def _body(schema: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/"
                                                                                  f"{schema}"}}}}


def openapi(version: str = "") -> dict:
    """The OpenAPI 3.0 document of the stream API and the health route (a fresh copy each call)."""
    stream_list = {"description": "Every stream, oldest first.",
                   "content": {"application/json": {"schema": {"type": "array", "items": {
                       "$ref": "#/components/schemas/Stream"}}}}}
    one = "/api/streams/{id}"
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "EdgeFlow gateway: streams", "version": version or "1",
                 "description": "Streams at run time: each active stream is a source and its workers feeding "
                                "this gateway (`app.streams(...)`). Live frames of one stream: WebSocket "
                                "`/ws/frames?stream_id=<id>` (binary JPEG messages and a JSON `metrics` text "
                                "message at least once a second). Reference: docs/streams.md."},
        "security": [{"bearer": []}, {"token": []}, {}],
        "paths": {
            "/health": {"get": {"operationId": "health", "summary": "Liveness of the web server.",
                                "security": [{}],
                                "responses": {"200": {"description": "Serving.", "content": {
                                    "application/json": {"schema": {"type": "object", "required": ["status"],
                                                                    "properties": {"status": {
                                                                        "type": "string",
                                                                        "enum": ["ok"]}}}}}}}}},
            "/api/streams": {
                "get": {"operationId": "listStreams", "summary": "List the streams.",
                        "responses": {"200": stream_list, **_AUTH, **_STORE}},
                "post": {"operationId": "createStream", "summary": "Add a stream (and activate it when "
                                                                     "`is_active` is true).",
                         "requestBody": _body("StreamCreate"),
                         "responses": {**_links(_stream("Stored (and active when asked).", "201")), **_AUTH,
                                       **_BODY_ERRORS, **_RUN_ERRORS, **_STORE,
                                       "400": _error("The body is not JSON, or (`is_active`) its url or "
                                                     "params were refused by the node classes.")}}},
            one: {
                "parameters": [_ID],
                "get": {"operationId": "getStream", "summary": "One stream with its workers' state.",
                        "responses": {**_stream("The stream."), **_AUTH, **_NOT_FOUND, **_STORE}},
                "put": {"operationId": "updateStream", "summary": "Change a stream (live when it is active).",
                        "requestBody": _body("StreamUpdate"),
                        "responses": {**_stream("The stream as stored now."), **_AUTH, **_NOT_FOUND,
                                      **_BODY_ERRORS, **_RUN_ERRORS, **_STORE,
                                      "400": _error("The body is not JSON, or a new url or params were "
                                                    "refused by the node classes (nothing changed).")}},
                "delete": {"operationId": "deleteStream", "summary": "Remove a stream (deactivated first).",
                           "responses": {"200": {"description": "Removed.", "content": {"application/json": {
                               "schema": {"type": "object", "required": ["id", "deleted"], "properties": {
                                   "id": {"type": "string"}, "deleted": {"type": "boolean"}}}}}},
                               **_AUTH, **_NOT_FOUND, **_RUN_ERRORS, **_STORE}}},
            one + "/activate": {
                "parameters": [_ID],
                "post": {"operationId": "activateStream",
                         "summary": "Start its source and workers (returns once the processes started).",
                         "responses": {**_stream("Active."), **_AUTH, **_NOT_FOUND, **_RUN_ERRORS, **_STORE,
                                       **_REFUSED}}},
            one + "/deactivate": {
                "parameters": [_ID],
                "post": {"operationId": "deactivateStream", "summary": "Stop its source and workers.",
                         "responses": {**_stream("Inactive."), **_AUTH, **_NOT_FOUND, **_RUN_ERRORS,
                                       **_STORE}}},
        },
        "components": {
            "schemas": {"StreamCreate": _public(STREAM_CREATE), "StreamUpdate": _public(STREAM_UPDATE),
                        "Stream": _public(STREAM), "Error": _public(ERROR)},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "The gateway's token (EDGEFLOW_GATEWAY_TOKEN), when it has one."},
                "token": {"type": "apiKey", "in": "query", "name": "token",
                          "description": "The same token as `?token=` (for browsers)."}}},
    }
    return doc


def _public(schema: dict) -> dict:
    """A schema as the description shows it: the checker's own keys (``x-anyOf-error``) left out."""
    out = copy.deepcopy(schema)
    out.pop("x-anyOf-error", None)
    out.pop("x-anyOf-field", None)
    return out
