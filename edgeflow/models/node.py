"""ModelNode: a consumer node that runs a model block, and swaps in a new version of it while it runs.

Hot reload. The node looks at the model's source file (``os.stat``, every ``watch_interval`` seconds, from
``process()`` and ``idle()``); when its contents changed, or when asked (``on_control({"action": "reload"})``,
which the gateway's ``POST /api/nodes/{name}/reload`` sends), a loader thread compiles the file afresh into a
new module, instantiates the class and calls its ``init(context)`` while the old instance goes on processing.
Once it is ready, the node's own thread switches between two messages: every message is processed by exactly
one version, and none is held back or repeated. The old instance's ``shutdown()`` is called after the switch.
A version that fails to load or to ``init`` is logged, counted (``extra["model"]["last_reload_error"]``) and
dropped; the old one keeps running.
"""

from __future__ import annotations

import concurrent.futures
import copy
import os
import sys
import threading
import time
from typing import Any

from edgeflow.connectors import _base
from edgeflow.errors import ConfigError
from edgeflow.models import loader
from edgeflow.models.block import ModelBlockContext
from edgeflow.nodes.base import ConsumerNode

OPTIONS = ("model", "module_path", "params", "version", "twin_id", "asset_id", "watch", "watch_interval",
           "python_path")
META_KEY = "edgeflow.model_version"      # on every output frame: the version that made it (left out of rows)
STOP_WAIT = 10.0                         # seconds teardown waits for a loader thread still running init()


class _Running:
    """One instantiated version: its code, instance, context and version string."""

    __slots__ = ("loaded", "instance", "context", "version", "meta")

    def __init__(self, loaded: loader.Loaded, instance: Any, context: ModelBlockContext) -> None:
        self.loaded, self.instance, self.context = loaded, instance, context
        self.version = context.version
        self.meta = {META_KEY: self.version}


class ModelNode(ConsumerNode):
    """Runs a model block (``edgeflow.models.ModelBlock``) as a consumer node, with hot reload.

    Guarantee: each input message is processed by exactly one model version, across any number of reloads.

    Options: ``model`` ("package.module:Class", "path/to/file.py[:Class]" or the class; ``module_path`` is
    PyEdgeTwin's name for it), ``params`` (a dict: ``context.config``), ``version`` (the starting version's
    name), ``twin_id``, ``asset_id``, ``watch`` (reload when the source file changes: True), ``watch_interval``
    (seconds between looks at the file: 0.5) and ``python_path`` (folders put first on ``sys.path`` before
    the import, e.g. the configuration's folder).

    Input: a dict message goes to ``process(msg)`` as it is; any other payload as ``{"data": payload}``.
    Output: what ``process`` returns (a dict goes on as a dict message; None sends nothing), its frame's meta
    saying which version made it (``edgeflow.model_version``).
    """

    model: Any = None
    module_path: Any = None
    params: Any = None
    version: Any = None
    twin_id: Any = None
    asset_id: Any = None
    watch: bool = True
    watch_interval: float = 0.5
    python_path: Any = None

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """Validate the options at registration; the model's module is looked for, not imported.

        Raises:
            ConfigError: ``node 'kalman': option 'model': ...`` for the first bad option.
        """
        _base.unknown_options(name, options, OPTIONS)
        key, ref = _reference(name, options)
        for opt in ("version", "twin_id", "asset_id"):
            value = options.get(opt)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
                raise _base.option_error(name, opt, f"expected a string, got {value!r}")
        params = options.get("params")
        if params is not None and not isinstance(params, dict):
            raise _base.option_error(name, "params", f"expected a mapping, got {type(params).__name__}")
        _base.opt_bool(name, options, "watch", default=True)
        _base.opt_number(name, options, "watch_interval", default=0.5, low=0.01, high=3600)
        folders = _python_path(name, options.get("python_path"))
        saved = list(sys.path)
        try:
            loader.add_python_path(folders)
            loader.check(ref)
        except loader.ModelLoadError as exc:
            raise _base.option_error(name, key, str(exc)) from None
        finally:
            sys.path[:] = saved          # registration must not change the parent's imports

    # -- lifecycle -----------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load and ``init`` the first version (a failure is the node's ConfigError: the run cannot start)."""
        key, self._ref = _reference(self.name, self.config)
        loader.add_python_path(_python_path(self.name, self.python_path))
        self._lock = threading.Lock()           # guards the loader thread's hand-over (_outcome)
        self._thread: threading.Thread | None = None
        self._outcome: tuple | None = None       # set by the loader thread: ("ok", _Running) or ("error", text)
        self._waiters: list = []                 # futures of the load in progress (control requests)
        self._queued: list = []                  # (future, version) asked for while a load was in progress
        self._reloads = self._failures = 0
        self._last_error: str | None = None
        self._loads = 0
        self._active: _Running | None = None
        self._watching = False
        try:
            loaded = loader.load_first(self._ref, self.name)
            self._active = self._instantiate(loaded, self.version)
        except Exception as exc:
            why = str(exc) if isinstance(exc, loader.ModelLoadError) else loader._one_line(exc)
            raise ConfigError(f"node '{self.name}': option '{key}': {why}") from exc
        self._watching = bool(self.watch) and self._active.loaded.path is not None
        self._seen = self._active.loaded.stat
        self._next_look = time.monotonic() + float(self.watch_interval)
        if self.watch and not self._watching:
            self.log.info("%s: model %s has no source file of its own (defined in the main script?): it is "
                          "not watched for changes", self.name, self._ref.text)
        self._publish()
        self.log.info("%s: model %s version %s", self.name, self._ref.text, self._active.version)

    def process(self, data: Any) -> Any:
        """Run the active version on one message (a switch to a new one happens here, between messages)."""
        if self._outcome is not None or (self._watching and time.monotonic() >= self._next_look):
            self._between()
        active = self._active
        result = active.instance.process(data if isinstance(data, dict) else {"data": data})
        if isinstance(result, (dict, list)):
            return result, active.meta
        return result

    def idle(self) -> None:
        """No message for a while: look at the file, finish a switch that is ready."""
        self._between()

    def teardown(self) -> None:
        """Wait for a loader thread, then ``shutdown()`` every instance still alive."""
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(STOP_WAIT)
        outcome, self._outcome = getattr(self, "_outcome", None), None
        if outcome is not None and outcome[0] == "ok":
            self._shutdown(outcome[1])
        for future in getattr(self, "_waiters", []) + [f for f, _ in getattr(self, "_queued", [])]:
            if not future.done():
                future.set_result(self._answer(False, 503, f"node '{self.name}' is stopping"))
        if getattr(self, "_active", None) is not None:
            self._shutdown(self._active)
            self._active = None

    def on_control(self, message: dict) -> Any:
        """A control message from the gateway (via the supervisor): ``{"action": "reload", "version": ...}``
        loads the source afresh (even unchanged) and returns a Future of the answer, set once the new version
        runs (or failed to load: the old one runs on)."""
        action = message.get("action") if isinstance(message, dict) else None
        if action != "reload":
            return self._answer(False, 400, f"node '{self.name}': unknown control action {action!r} "
                                            "(known: reload)")
        if getattr(self, "_active", None) is None:
            return self._answer(False, 503, f"node '{self.name}': the model is not loaded yet")
        if self._active.loaded.path is None:
            return self._answer(False, 409, f"node '{self.name}': model {self._ref.text} has no source file "
                                            "to reload from (defined in the main script?)")
        version = message.get("version")
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self._thread is not None:
            self._queued.append((future, version))      # after the load in progress
        else:
            self._start_load(version, [future])
        return future

    # -- reloading -----------------------------------------------------------------------------------------
    def _between(self) -> None:
        """Between two messages: apply a finished load; look at the source file when it is time."""
        if self._outcome is not None:
            self._finish()
        if self._watching and self._thread is None and time.monotonic() >= self._next_look:
            self._next_look = time.monotonic() + float(self.watch_interval)
            self._look()

    def _look(self) -> None:
        """Start a load when the source file's contents differ from the running version's."""
        path = self._active.loaded.path
        stat = loader.file_stat(path)
        if stat is None or stat == self._seen:
            return
        self._seen = stat
        data = loader._read(path)
        if data is None or loader.digest_of(data) == self._active.loaded.digest:
            return                       # touched, or written back as it was: no new version
        self._start_load(None, [])

    def _start_load(self, version: Any, waiters: list) -> None:
        self._loads += 1
        self._waiters = waiters
        current, n = self._active.loaded, self._loads
        explicit = None if version is None else str(version)

        def load() -> None:
            try:
                fresh = loader.reload(self._ref, current, self.name, n)
                try:
                    outcome: tuple = ("ok", self._instantiate(fresh, explicit))
                except BaseException:
                    fresh.retire()
                    raise
            except loader.ModelLoadError as exc:      # reported by the node's thread; the old version runs on
                outcome = ("error", str(exc))
            except Exception as exc:                  # init() raised
                outcome = ("error", loader._one_line(exc))
            with self._lock:
                self._outcome = outcome

        self._thread = threading.Thread(target=load, name=f"edgeflow-model-load:{self.name}", daemon=True)
        self._publish()
        self._thread.start()

    def _finish(self) -> None:
        """The loader thread is done: switch to the new version, or report why there is none."""
        with self._lock:
            outcome, self._outcome = self._outcome, None
        self._thread.join()
        self._thread = None
        waiters, self._waiters = self._waiters, []
        old = self._active
        if outcome[0] == "ok":
            new = outcome[1]
            self._active = new                    # from the next message on
            self._reloads += 1
            self._last_error = None
            self._seen = new.loaded.stat or self._seen
            self.log.info("%s: model version %s -> %s (reload %d)", self.name, old.version, new.version,
                          self._reloads)
            self._shutdown(old)
            answer = self._answer(True, 200, None, previous=old.version)
        else:
            self._failures += 1
            self._last_error = outcome[1]
            self.log.error("node '%s': model reload failed, version %s keeps running: %s", self.name,
                           old.version, outcome[1])
            answer = self._answer(False, 422, outcome[1])
        self._publish()
        for future in waiters:
            future.set_result(answer)
        if self._queued:
            queued, self._queued = self._queued, []
            self._start_load(queued[-1][1], [future for future, _ in queued])

    def _instantiate(self, loaded: loader.Loaded, explicit: str | None) -> _Running:
        """A new instance of the loaded class, with its context, after its ``init(context)``."""
        version = loader.version_of(explicit, loaded.module, loaded.digest)
        context = ModelBlockContext(
            _text(self.asset_id), _text(self.twin_id), version, copy.deepcopy(dict(self.params or {})),
            node=self.name, replica=self.replica, log=self.log, frame=lambda: self.current_frame)
        instance = loaded.cls()
        try:
            instance.context = context
        except AttributeError:                 # a class with __slots__: it keeps what init() gets, if it likes
            pass
        init = getattr(instance, "init", None)
        if callable(init):
            init(context)
        return _Running(loaded, instance, context)

    def _shutdown(self, running: _Running) -> None:
        try:
            stop = getattr(running.instance, "shutdown", None)
            if callable(stop):
                stop()
        except Exception as exc:               # the next version already runs: say so, go on
            self.log.error("node '%s': shutdown() of model version %s raised %s", self.name, running.version,
                           loader._one_line(exc))
        finally:
            running.loaded.retire()

    def _answer(self, ok: bool, status: int, error: str | None, **more: Any) -> dict:
        active = getattr(self, "_active", None)
        return {"ok": ok, "status": status, "error": error, "replica": self.replica,
                "version": active.version if active is not None else None, **more}

    def _publish(self) -> None:
        """This replica's model figures into its statistics (``extra["model"]``)."""
        metrics = getattr(self.context, "metrics", None)
        if metrics is None or self._active is None:
            return
        metrics.extra["model"] = {
            "model": self._ref.text, "class": self._active.loaded.cls.__qualname__,
            "version": self._active.version, "source": self._active.loaded.path, "watching": self._watching,
            "reloads": self._reloads, "reload_failures": self._failures, "last_reload_error": self._last_error,
            "loading": self._thread is not None}


def _reference(name: str, options: Any) -> tuple[str, loader.ModelRef]:
    """(the option naming the model, its parsed reference).

    Raises:
        ConfigError: neither or both of model and module_path, or a reference of no accepted form.
    """
    given = [key for key in ("model", "module_path") if options.get(key) is not None]
    if len(given) != 1:
        raise _base.option_error(name, "model", "required: 'package.module:Class' or a .py file (or "
                                                "module_path, not both)" if not given else
                                 "give model or module_path, not both")
    try:
        return given[0], loader.parse(options[given[0]])
    except loader.ModelLoadError as exc:
        raise _base.option_error(name, given[0], str(exc)) from None


def _python_path(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    folders = [value] if isinstance(value, str) else value
    if not isinstance(folders, (list, tuple)) or not all(isinstance(f, str) and f for f in folders):
        raise _base.option_error(name, "python_path", f"expected a folder or a list of folders, got {value!r}")
    return [os.path.abspath(f) for f in folders]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
