"""Finding and loading a model block's class: by reference, and afresh from its source for a hot reload.

A reference is one of:

    "package.module:Class"       imported as usual (``module_path`` in PyEdgeTwin's configuration)
    "package.module"             the module's only ModelBlock subclass
    "models/kalman.py:Class"     a source file (relative: to the folder given, else the working directory)
    "models/kalman.py"           that file's only ModelBlock subclass
    a class                      itself

A reload never goes through the import system's caches: the source file is read, hashed and compiled here,
into a new module object under a new name (``<module>__v<n>``, registered in ``sys.modules`` while in use, so
dataclasses and the like find it). Reading the bytes ourselves means the code that runs is the code that was
hashed: a ``.pyc`` whose source changed within the same second (and kept its size) is never used. Relative
imports in the module keep working (its ``__package__`` is the original's); the modules it imports are not
reloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import sys
import types
from typing import Any

from edgeflow.models.block import ModelBlock


class ModelLoadError(Exception):
    """A model could not be found, imported or instantiated; the message is one line saying why."""


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A parsed model reference.

    Attributes:
        text: the reference as given (for messages). module: the dotted module name, or None for a file.
        path: the source file's absolute path for a file reference, else None. name: the class's (qualified)
        name, or None for "the module's only model block". cls: the class itself when given as one.
    """

    text: str
    module: str | None = None
    path: str | None = None
    name: str | None = None
    cls: Any = None


def parse(ref: Any, base_dir: str | os.PathLike | None = None) -> ModelRef:
    """The ModelRef of ``ref`` (see the module docstring); a relative file path resolves against ``base_dir``
    (default: the working directory) and comes back absolute.

    Raises:
        ModelLoadError: neither a class nor a string of one of the accepted forms.
    """
    if isinstance(ref, type):
        return ModelRef(f"{ref.__module__}:{ref.__qualname__}", module=ref.__module__, name=ref.__qualname__,
                        cls=ref)
    if not isinstance(ref, (str, os.PathLike)) or not str(ref).strip():
        raise ModelLoadError(f"expected 'package.module:Class', a .py file or a class, got {ref!r}")
    text = os.fspath(ref).strip()
    where, _, name = text.rpartition(":") if text.count(":") else (text, "", "")
    if not where:
        where, name = text, ""
    if name and not all(part.isidentifier() for part in name.split(".")):
        raise ModelLoadError(f"{text!r}: {name!r} is not a class name")
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = os.path.abspath(os.path.join(os.fspath(base_dir) if base_dir else os.getcwd(),
                                            os.path.expanduser(where)))
        return ModelRef(text, path=path, name=name or None)
    if not all(part.isidentifier() for part in where.split(".")):
        raise ModelLoadError(f"{text!r}: expected 'package.module:Class' or a path to a .py file")
    return ModelRef(text, module=where, name=name or None)


def check(ref: ModelRef) -> None:
    """Cheap checks before anything starts (the module is not imported): the file exists, or the module can
    be found (its parent packages are imported to look).

    Raises:
        ModelLoadError: saying what is missing.
    """
    if ref.cls is not None:
        return
    if ref.path is not None:
        if not os.path.isfile(ref.path):
            raise ModelLoadError(f"{ref.text!r}: no such file {ref.path}")
        return
    try:
        found = importlib.util.find_spec(ref.module)
    except (ImportError, ValueError) as exc:
        raise ModelLoadError(f"{ref.text!r}: {type(exc).__name__}: {exc}") from None
    if found is None:
        raise ModelLoadError(f"{ref.text!r}: no module named {ref.module!r}")


@dataclasses.dataclass
class Loaded:
    """One loaded version of the model's code (before instantiation).

    Attributes:
        cls: the model class. module: its module. path: its source file, or None (nothing to watch).
        digest: SHA-1 of the source bytes (None without a file). stat: the file's (mtime_ns, size, inode)
        when it was read. fresh: the module was made here (taken out of ``sys.modules`` when retired).
    """

    cls: type
    module: types.ModuleType
    path: str | None
    digest: str | None
    stat: tuple | None
    fresh: bool

    def retire(self) -> None:
        """Forget the module (a reloaded one is in ``sys.modules`` under its own name only while in use)."""
        if self.fresh and sys.modules.get(self.module.__name__) is self.module:
            del sys.modules[self.module.__name__]


def file_stat(path: str | None) -> tuple | None:
    """``(mtime_ns, size, inode)`` of ``path``, or None when it cannot be read."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def source_of(module: types.ModuleType) -> str | None:
    """The module's .py file, or None (a built-in, a namespace package, compiled code)."""
    path = getattr(module, "__file__", None)
    return path if isinstance(path, str) and path.endswith(".py") and os.path.isfile(path) else None


def digest_of(data: bytes) -> str:
    """The SHA-1 of source bytes, in hex."""
    return hashlib.sha1(data).hexdigest()


def load_first(ref: ModelRef, node: str) -> Loaded:
    """The version the node starts with: the class given, the module imported as usual, or a file's source.

    Raises:
        ModelLoadError: the module does not import, or it holds no such class (one line).
    """
    if ref.path is not None:
        return load_source(ref, ref.path, f"edgeflow_models_{node}", 0)
    if ref.cls is not None:
        module = sys.modules.get(ref.cls.__module__)
    else:
        try:
            module = importlib.import_module(ref.module)
        except Exception as exc:
            raise ModelLoadError(f"{ref.text!r}: importing {ref.module} failed: {_one_line(exc)}") from exc
    # a class of the main script is never reloaded: running main.py again would build (or run) the app again
    main = module is None or module.__name__ in ("__main__", "__mp_main__")
    path = None if main else source_of(module)
    data = _read(path) if path else None
    cls = ref.cls if ref.cls is not None else find_class(module, ref)
    return Loaded(cls, module, path, digest_of(data) if data is not None else None, file_stat(path), False)


def load_source(ref: ModelRef, path: str, base_name: str, n: int, package: str | None = None) -> Loaded:
    """Compile and run ``path`` as a new module named ``<base_name>__v<n>`` and find the model class in it.

    Args:
        package: the module's ``__package__`` (relative imports resolve against it); None for a file.

    Raises:
        ModelLoadError: the file cannot be read, does not compile or raises, or holds no such class.
    """
    stat = file_stat(path)
    data = _read(path)
    if data is None:
        raise ModelLoadError(f"{ref.text!r}: cannot read {path}")
    name = f"{base_name}__v{n}"
    module = types.ModuleType(name)
    module.__file__ = path
    module.__package__ = package if package is not None else ""
    module.__spec__ = importlib.util.spec_from_file_location(name, path)
    if os.path.basename(path) == "__init__.py":
        module.__path__ = [os.path.dirname(path)]
    if ref.path is not None:
        folder = os.path.dirname(path)            # a file's siblings import as they would beside a script
        if folder not in sys.path:
            sys.path.append(folder)
    sys.modules[name] = module
    try:
        exec(compile(data, path, "exec", dont_inherit=True), module.__dict__)
        cls = find_class(module, ref)
    except ModelLoadError:
        sys.modules.pop(name, None)
        raise
    except BaseException as exc:
        sys.modules.pop(name, None)
        if not isinstance(exc, Exception):
            raise
        raise ModelLoadError(f"{ref.text!r}: loading {path} failed: {_one_line(exc)}") from exc
    return Loaded(cls, module, path, digest_of(data), stat, True)


def reload(ref: ModelRef, current: Loaded, node: str, n: int) -> Loaded:
    """Version ``n`` of the model from its source file, loaded afresh beside ``current``.

    Raises:
        ModelLoadError: there is no source file to load from, or loading it failed.
    """
    path = current.path
    if path is None:
        raise ModelLoadError(f"{ref.text!r}: the model has no source file to reload from")
    if ref.path is not None:
        return load_source(ref, path, f"edgeflow_models_{node}", n)
    original = ref.module or current.cls.__module__
    package = getattr(sys.modules.get(original), "__package__", None) or original.rpartition(".")[0]
    named = dataclasses.replace(ref, cls=None, name=ref.name or current.cls.__qualname__)
    return load_source(named, path, original, n, package)


def find_class(module: types.ModuleType, ref: ModelRef) -> type:
    """The model class of ``module``: the one ``ref`` names, else the only ModelBlock subclass defined there
    (else the only class defining both ``init`` and ``process``: PyEdgeTwin's model blocks derive from its own
    base class).

    Raises:
        ModelLoadError: no such class, not a class, or several candidates.
    """
    if ref.name:
        found: Any = module
        for part in ref.name.split("."):
            found = getattr(found, part, None)
        if not isinstance(found, type):
            what = "no class" if found is None else f"{type(found).__name__}, not a class,"
            raise ModelLoadError(f"{ref.text!r}: {what} {ref.name!r} in {_where(module)}")
        if not callable(getattr(found, "process", None)):
            raise ModelLoadError(f"{ref.text!r}: {ref.name} has no process(msg) method")
        return found
    own = [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__]
    blocks = [c for c in own if issubclass(c, ModelBlock)]
    if not blocks:
        blocks = [c for c in own if all(callable(getattr(c, hook, None)) for hook in ("init", "process"))]
    if len(blocks) != 1:
        listed = ", ".join(sorted(c.__name__ for c in blocks)) or "none"
        raise ModelLoadError(f"{ref.text!r}: {_where(module)} must define exactly one model block class "
                             f"(found {listed}); name it as 'module:Class'")
    return blocks[0]


def version_of(explicit: str | None, module: types.ModuleType, digest: str | None) -> str:
    """The version to report: ``explicit``, else the module's ``__version__``, else ``src-<12 hex>`` of the
    source's hash (``unversioned`` without a source)."""
    if explicit is not None:
        return str(explicit)
    declared = getattr(module, "__version__", None)
    if declared is not None and str(declared):
        return str(declared)
    return f"src-{digest[:12]}" if digest else "unversioned"


def add_python_path(folders: list[str]) -> None:
    """Put ``folders`` first on ``sys.path`` (a configuration's folder, so ``mymodels.kalman`` imports)."""
    for folder in reversed(folders):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None


def _where(module: types.ModuleType) -> str:
    return source_of(module) or module.__name__


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
