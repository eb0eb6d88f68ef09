"""Streams at run time, on the gateway: a REST API over the app's stream template (``app.streams(...)``), a
store that outlives the app (SQLite or PostgreSQL), live frames per stream, and their OpenAPI description.

Modules: ``schema`` (request and response schemas: validation and the OpenAPI document), ``store`` (SQLite /
PostgreSQL, numbered migrations), ``service`` (the store and the runtime kept in step), ``api`` (the HTTP
routes, /api/openapi.json, /api/docs), ``frames`` (``WS /ws/frames?stream_id=``). See docs/streams.md.
"""
