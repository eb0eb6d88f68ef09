"""The stream API's logic: the store (on a thread of its own) and the runtime (``runtime.control("@streams",
...)``) kept in step, one stream at a time.

Rules:

* The store is the truth of what should run: a stream is stored ``is_active`` once the runtime answered that
  it activated it, and stored inactive before (or once) it is deactivated. A create with ``is_active: true``
  whose activation is refused stores nothing: the answer is the refusal.
* Operations on one stream are serialised (a lock per id); different streams proceed side by side.
* At the gateway's start, every stream stored active is activated again (the app was restarted, or the gateway
  process was: activating an active stream with the same url is a no-op for the runtime). The store may be
  unreachable then (a PostgreSQL that is not up yet): it is retried with back-off until it answers.
* After a stream is deactivated the gateway drops its topics' newest frames, which are zero-copy views of the
  rings that were just removed (their memory is given back once nothing holds them).
* Reads never make a SQLite file nobody wrote to; the first write does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from typing import Any, Callable

from edgeflow.connectors._base import redact
from edgeflow.gateway.streams import store as stores
from edgeflow.gateway.streams.store import Store, StoreError, StreamRecord

log = logging.getLogger("edgeflow.gateway")

STREAMS_NODE = "@streams"       # the runtime's pseudo node for stream operations (runtime/dynamic.py)
ACTIVATE_TIMEOUT = 30.0         # seconds the runtime gets to start (or stop) a stream's processes
PARAMS_TIMEOUT = 10.0           # seconds for every worker replica to take new params
STORE_RETRY = (0.5, 30.0)       # seconds between attempts to open an unreachable store: first, most
RESTORE_ATTEMPTS = 3            # tries per stream when re-activating at start (a runtime that timed out)


class StreamError(Exception):
    """An operation that failed: ``status`` (HTTP), a one-line message, optional details for the JSON."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


class StreamService:
    """The streams of one gateway (see the module docstring).

    Args:
        runtime: the gateway's runtime object (``app``, ``statistics()``, ``control(node, message)``).
        hub: the gateway's Hub (a deactivated stream's topics are cleared there).
        opener: makes the (unopened) Store; ``store_for(runtime.app)`` by default.
    """

    def __init__(self, runtime: Any, hub: Any = None, opener: Callable[[], Store] | None = None) -> None:
        self.runtime = runtime
        self.hub = hub
        self.app = str(getattr(runtime, "app", "app"))
        self._opener = opener or (lambda: stores.store_for(self.app))
        self._store: Store | None = None
        self._location: Store | None = None          # the unopened store: where it is, whether it exists
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._open_lock: asyncio.Lock | None = None
        self._open_error: StreamError | None = None
        self._retry_at = 0.0
        self._locks: dict[str, asyncio.Lock] = {}
        self.errors: dict[str, str] = {}             # stream id -> why its last activation failed
        self.restoring: set[str] = set()             # stored active, being activated again at start
        self.counts: tuple[int, int] = (0, 0)        # (streams, active): cached for /metrics, /api/status
        self._task: asyncio.Task | None = None
        self.closed = False

    # -- life (event loop) -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin serving: re-activate the streams stored active, in the background."""
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="edgeflow-streams-db")
        self._open_lock = asyncio.Lock()
        self._task = asyncio.ensure_future(self._restore())

    async def close(self) -> None:
        """Stop the background work and close the store (the streams keep running: the app decides)."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            if self._store is not None:
                await self._db(self._store.close)
            self._executor.shutdown(wait=True)
            self._executor = None
        self._store = None

    async def _db(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run a store call on the store's own thread (never on the event loop)."""
        if self._executor is None:
            raise StreamError(503, "the stream store is closed")
        call = functools.partial(function, *args, **kwargs)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except StoreError as exc:          # the database went away meanwhile: 503, and the reason
            raise StreamError(503, str(exc)) from None

    async def store(self, create: bool = True) -> Store | None:
        """The open store; None when ``create`` is False and nothing was ever stored.

        Raises:
            StreamError: 503 when the store cannot be opened (retried at most every few seconds).
        """
        if self._store is not None:
            return self._store
        if self._open_lock is None:
            raise StreamError(503, "the stream store is not started")
        async with self._open_lock:
            if self._store is not None:
                return self._store
            if self._location is None:
                try:
                    self._location = self._opener()
                except Exception as exc:            # a bad EDGEFLOW_DB_URL: the same answer until it is fixed
                    self._open_error = StreamError(503, f"stream store: {exc}")
                    raise self._open_error from None
            if not create and not await self._db(stores.exists, self._location):
                return None
            if self._open_error is not None and time.monotonic() < self._retry_at:
                raise self._open_error
            try:
                self._store = await self._db(self._location.open)
            except StreamError as exc:
                self._open_error = exc
                self._retry_at = time.monotonic() + STORE_RETRY[0] * 4
                raise
            self._open_error = None
            self.counts = await self._db(self._store.counts)
            log.info("gateway: streams stored in %s (%s)", self._store.where, self._store.backend)
            return self._store

    # -- reads -----------------------------------------------------------------------------------------------
    async def list(self) -> list[dict]:
        """Every stream as the API shows it."""
        store = await self.store(create=False)
        if store is None:
            return []
        records = await self._db(store.list)
        live = self.live()
        return [self.view(r, live) for r in records]

    async def record(self, stream_id: str) -> StreamRecord:
        """The stored stream.

        Raises:
            StreamError: 404 unknown id.
        """
        store = await self.store(create=False)
        record = await self._db(store.get, stream_id) if store is not None else None
        if record is None:
            raise StreamError(404, f"unknown stream {stream_id[:64]!r}", id=stream_id[:64])
        return record

    async def get(self, stream_id: str) -> dict:
        """One stream as the API shows it (404 unknown)."""
        return self.view(await self.record(stream_id))

    def live_statistics(self) -> dict:
        """The runtime's statistics snapshot ({} when it cannot give one)."""
        try:
            stats = self.runtime.statistics()
        except Exception:                   # a runtime hiccup: show the stored state
            return {}
        return stats if isinstance(stats, dict) else {}

    def live(self) -> dict:
        """``runtime.statistics()["streams"]``: what the runtime runs now ({} when it cannot say)."""
        found = self.live_statistics().get("streams")
        return found if isinstance(found, dict) else {}

    def view(self, record: StreamRecord, live: dict | None = None) -> dict:
        """A stored stream merged with what the runtime says of it (the API's Stream object)."""
        info = (self.live() if live is None else live).get(record.id) if record.is_active else None
        error = self.errors.get(record.id)
        if not record.is_active:
            state = "stopped"              # even while a stale snapshot still lists it
        elif isinstance(info, dict):
            state = str(info.get("state") or "starting")
        elif record.id in self.restoring or error is None:
            state = "starting"
        else:
            state = "failed"
        info = info if isinstance(info, dict) else {}
        started = info.get("started_at")
        params = record.params
        return {"id": record.id, "name": record.name, "url": record.url, "rtsp_url": record.url,
                "params": params, "grid_size": params.get("grid_size"), "threshold": params.get("threshold"),
                "is_active": record.is_active, "worker_state": state,
                "source_state": info.get("source_state"),
                "worker_started_at": stores.iso(started) if isinstance(started, (int, float)) else None,
                "fps": info.get("fps"), "nodes": list(info.get("nodes") or ()),
                "topics": list(info.get("topics") or ()), "error": error,
                "created_at": record.created_at, "updated_at": record.updated_at}

    def template(self) -> dict | None:
        """The app's stream template as the graph announces it (``{"source", "workers", "to", "replicas"}``;
        its options left out), or None when the app declares none."""
        try:
            graph = self.runtime.graph() or {}
        except Exception:
            return None
        found = graph.get("streams")
        if not isinstance(found, dict):
            return None
        return {k: found.get(k) for k in ("source", "workers", "to", "replicas")}

    # -- writes ----------------------------------------------------------------------------------------------
    def _lock(self, stream_id: str) -> asyncio.Lock:
        lock = self._locks.get(stream_id)
        if lock is None:
            lock = self._locks[stream_id] = asyncio.Lock()
        return lock

    async def create(self, name: str, url: str, params: dict, active: bool) -> dict:
        """Store a new stream, activated when ``active`` (nothing is stored when that activation fails)."""
        store = await self.store()
        record = StreamRecord.new(name, url, params)
        async with self._lock(record.id):
            await self._db(store.insert, record)
            await self._recount()
            if active:
                try:
                    await self._activate(record)
                    record = await self._db(store.update, record.id, is_active=True) or record
                except BaseException as exc:
                    if not isinstance(exc, StreamError):      # it runs, but could not be recorded: stop it
                        self._fire({"action": "deactivate", "id": record.id})
                    await self._db(store.delete, record.id)
                    self.errors.pop(record.id, None)
                    await self._recount()
                    raise
                await self._recount()
        log.info("gateway: stream %s (%s) added%s", record.id, record.name, ", active" if active else "")
        return self.view(record)

    async def update(self, stream_id: str, changes: dict) -> dict:
        """Change a stream's name, url, params and/or activity; live when it is active (module docstring)."""
        await self.record(stream_id)              # 404 before a lock (or a file) is made for an unknown id
        store = await self.store()
        async with self._lock(stream_id):
            old = await self.record(stream_id)
            fields = {k: changes[k] for k in ("name", "url", "params") if k in changes}
            new = old.replace(**fields)
            want = changes.get("is_active", old.is_active)
            if old.is_active and want:
                if new.url != old.url:
                    await self._restart(old, new)
                elif new.params != old.params:
                    await self._new_params(new)
            elif want and not old.is_active:
                await self._activate(new)
            elif old.is_active and not want:
                await self._deactivate(old)
            new = new.replace(is_active=want)
            if not await self._db(store.save, new):
                raise StreamError(404, f"unknown stream {stream_id[:64]!r}", id=stream_id[:64])
            await self._recount()
        return self.view(new)

    async def delete(self, stream_id: str) -> None:
        """Remove a stream, deactivating it first (its workers stop, its rings go)."""
        await self.record(stream_id)              # 404 before a lock (or a file) is made for an unknown id
        store = await self.store()
        async with self._lock(stream_id):
            record = await self.record(stream_id)
            if record.is_active or record.id in self.live():
                await self._deactivate(record)
            await self._db(store.delete, stream_id)
            self.errors.pop(stream_id, None)
            await self._recount()
        self._locks.pop(stream_id, None)
        log.info("gateway: stream %s (%s) deleted", record.id, record.name)

    async def activate(self, stream_id: str) -> dict:
        """Activate a stored stream (its source and workers start)."""
        await self.record(stream_id)              # 404 before a lock (or a file) is made for an unknown id
        store = await self.store()
        async with self._lock(stream_id):
            record = await self.record(stream_id)
            await self._activate(record)
            if not record.is_active:
                record = await self._db(store.update, stream_id, is_active=True) or record
                await self._recount()
        return self.view(record)

    async def deactivate(self, stream_id: str) -> dict:
        """Deactivate a stored stream (its source and workers stop, their rings are removed)."""
        await self.record(stream_id)              # 404 before a lock (or a file) is made for an unknown id
        store = await self.store()
        async with self._lock(stream_id):
            record = await self.record(stream_id)
            if record.is_active or record.id in self.live():
                await self._deactivate(record)
            if record.is_active:
                record = await self._db(store.update, stream_id, is_active=False) or record
                await self._recount()
        return self.view(record)

    async def _recount(self) -> None:
        if self._store is not None:
            self.counts = await self._db(self._store.counts)

    # -- the runtime -----------------------------------------------------------------------------------------
    async def _activate(self, record: StreamRecord) -> dict:
        try:
            answer = await self._control({"action": "activate", "id": record.id, "url": record.url,
                                          "params": dict(record.params)}, record, ACTIVATE_TIMEOUT)
        except StreamError as exc:
            self.errors[record.id] = str(exc)
            if exc.status == 504:            # it may still start: take it back rather than run unrecorded
                self._fire({"action": "deactivate", "id": record.id})
            raise
        self.errors.pop(record.id, None)
        return answer

    async def _deactivate(self, record: StreamRecord) -> None:
        topics = list((self.live().get(record.id) or {}).get("topics") or ())
        try:
            await self._control({"action": "deactivate", "id": record.id}, record, ACTIVATE_TIMEOUT,
                                not_found_ok=True)
        finally:
            self._forget(topics or [f"stream-{record.id}-"])
        self.errors.pop(record.id, None)

    async def _new_params(self, record: StreamRecord) -> None:
        answer = await self._control({"action": "params", "id": record.id, "params": dict(record.params)},
                                     record, PARAMS_TIMEOUT, not_found_ok=True)
        if answer.get("status") == 404:         # stored active but not running (a failed restore): start it
            await self._activate(record)

    async def _restart(self, old: StreamRecord, new: StreamRecord) -> None:
        """A new url: stop the old processes, start new ones; if the new url is refused, the old run again."""
        await self._deactivate(old)
        try:
            await self._activate(new)
        except StreamError:
            try:
                await self._activate(old)
            except StreamError as exc:
                log.error("gateway: stream %s: could not go back to its old url either: %s", old.id, exc)
            raise

    async def _control(self, message: dict, record: StreamRecord, timeout: float,
                       not_found_ok: bool = False) -> dict:
        """Send one stream operation and wait for its answer (the answer dict when ok).

        Raises:
            StreamError: 409 no stream template (or no stream support), 400 refused url/params, 501 a
                ``--node`` run, 502 another refusal, 504 no answer within ``timeout``.
        """
        action = message["action"]
        control = getattr(self.runtime, "control", None)
        if control is None:
            raise StreamError(501, "this gateway's runtime runs no streams (it relays no control messages)")
        try:
            future = control(STREAMS_NODE, message)
        except NotImplementedError as exc:
            raise StreamError(501, str(exc).splitlines()[0]) from None
        try:
            reply = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            raise StreamError(504, f"stream {record.id}: {action} got no answer from the runtime within "
                                   f"{timeout:g} s", id=record.id) from None
        reply = reply if isinstance(reply, dict) else {}
        if reply.get("error"):              # the relay's own answer: no '@streams' node to ask
            raise StreamError(409, f"stream {record.id}: this app cannot run streams ({reply['error']}); "
                                   "declare app.streams(source=..., workers=[...], to=...)", id=record.id)
        answer = (reply.get("results") or [{}])[0] or {}
        if answer.get("ok"):
            return answer
        status = int(answer.get("status") or 500)
        reason = str(answer.get("error") or "refused")
        if status == 404 and not_found_ok:
            return {"ok": True, "status": 404, "error": reason}
        if status == 404 and action == "activate":
            raise StreamError(409, f"stream {record.id}: {reason}", id=record.id)
        if status in (400, 409):
            raise StreamError(status, f"stream {record.id}: {redact_text(reason, record.url)}", id=record.id)
        raise StreamError(502, f"stream {record.id}: {action} failed: {redact_text(reason, record.url)}",
                          id=record.id)

    def _fire(self, message: dict) -> None:
        """Send an operation without waiting for its answer (a cleanup)."""
        control = getattr(self.runtime, "control", None)
        try:
            if control is not None:
                control(STREAMS_NODE, message)
        except Exception:                    # nobody to tell: the next activation reconciles
            pass

    def _forget(self, topics: list[str]) -> None:
        """Drop the newest frames (and JPEGs) of a stopped stream's topics: they pin removed rings' memory.
        A name ending in '-' stands for every topic it begins (the topics were not known)."""
        hub = self.hub
        if hub is None:
            return
        for topic in list(hub.topics.values()):
            if any(topic.name == t or (t.endswith("-") and topic.name.startswith(t)) for t in topics):
                topic.latest = None
                topic.cache.clear()
                topic.expected = False

    # -- at start --------------------------------------------------------------------------------------------
    async def _restore(self) -> None:
        """Activate again every stream stored active (see the module docstring)."""
        delay = STORE_RETRY[0]
        while not self.closed:
            try:
                store = await self.store(create=False)
                break
            except StreamError as exc:
                if self._location is None:            # bad settings (EDGEFLOW_DB_URL): retrying cannot help
                    log.error("gateway: %s; the stream API answers 503 until it is fixed", exc)
                    return
                log.warning("gateway: %s; trying again in %g s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY[1])
        else:
            return
        if store is None:
            return
        records = [r for r in await self._db(store.list) if r.is_active]
        if not records:
            return
        self.restoring.update(r.id for r in records)
        log.info("gateway: activating %d stored stream(s) again", len(records))
        await asyncio.gather(*(self._restore_one(r) for r in records))

    async def _restore_one(self, record: StreamRecord) -> None:
        try:
            for attempt in range(1, RESTORE_ATTEMPTS + 1):
                async with self._lock(record.id):
                    current = await self._db(self._store.get, record.id)
                    if current is None or not current.is_active:
                        return                       # changed meanwhile over the API
                    try:
                        await self._activate(current)
                        return
                    except StreamError as exc:
                        if exc.status not in (502, 504) or attempt == RESTORE_ATTEMPTS:
                            log.error("gateway: stream %s (%s, %s) not activated again: %s", record.id,
                                      record.name, redact(record.url), exc)
                            return
                await asyncio.sleep(attempt)         # a busy or restarting runtime: give it a moment
        finally:
            self.restoring.discard(record.id)


def redact_text(text: str, url: str) -> str:
    """``text`` with ``url`` (which may carry a password) shown without its password."""
    masked = redact(url)
    return text.replace(url, masked) if masked != url else text
