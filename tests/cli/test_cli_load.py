"""Issue 8: FILE is loaded as `python FILE` would run it, and app.run() is intercepted to take the app."""

from __future__ import annotations

import os
import sys

import pytest

from _clitools import EXAMPLES, NODES, write_app
from edgeflow import graph as graph_module
from edgeflow.cli import _load
from edgeflow.errors import ConfigError, GraphError


def test_links_made_under_main_are_captured():
    app = _load.load_app(EXAMPLES / "quickstart" / "main.py")
    assert app.name == "test-distributed-system"
    assert [(e.source, e.target) for e in app.graph().edges] == [
        ("fake_camera", "gpu_processor"), ("gpu_processor", "gateway"), ("fake_camera", "gateway")]


def test_a_folder_means_its_main_py():
    assert _load.load_app(EXAMPLES / "folder_style").name == "folder-demo"


def test_the_file_runs_as_main_with_its_folder_first_on_sys_path_and_argv_set(tmp_path):
    write_app(tmp_path, "VALUE = 42\n", name="helper_mod_for_load_test.py")
    write_app(tmp_path, NODES + '''
import sys, os
from helper_mod_for_load_test import VALUE        # a sibling module: the folder is on sys.path
SEEN = (__name__, list(sys.argv), VALUE, os.environ.get("EDGEFLOW_CAPTURE_GRAPH"))
app = EdgeApp("loadme")
app.node(Cam, name="cam")
app.node(Log, name="log")
if __name__ == "__main__":
    app.link("cam").to("log")
    app.config_seen = SEEN
    app.run()
''')
    before = (list(sys.argv), list(sys.path), graph_module._run_hook)
    app = _load.load_app(tmp_path / "main.py", ["--flag"])
    assert app.config_seen == ("__main__", [str(tmp_path / "main.py"), "--flag"], 42, "1")
    assert (list(sys.argv), list(sys.path), graph_module._run_hook) == before     # all restored
    assert "EDGEFLOW_CAPTURE_GRAPH" not in os.environ
    sys.modules.pop("helper_mod_for_load_test", None)


def test_code_after_app_run_does_not_run_when_capturing(tmp_path):
    marker = tmp_path / "ran"
    write_app(tmp_path, NODES + f'''
app = EdgeApp("after")
app.node(Cam, name="cam")
if __name__ == "__main__":
    app.run()
    open({str(marker)!r}, "w").close()
''')
    _load.load_app(tmp_path / "main.py")
    assert not marker.exists()


def test_a_file_that_never_calls_run_but_defines_one_app(tmp_path):
    write_app(tmp_path, NODES + 'app = EdgeApp("norun")\napp.node(Cam, name="cam")\n')
    assert _load.load_app(tmp_path / "main.py").name == "norun"


def test_no_app_several_apps_early_exit_and_missing_file(tmp_path):
    write_app(tmp_path / "a", "x = 1\n")
    with pytest.raises(ConfigError, match="defines no EdgeApp"):
        _load.load_app(tmp_path / "a" / "main.py")
    write_app(tmp_path / "b", NODES + 'a = EdgeApp("one")\nb = EdgeApp("two")\n')
    with pytest.raises(ConfigError, match="several apps"):
        _load.load_app(tmp_path / "b" / "main.py")
    write_app(tmp_path / "c", "raise SystemExit(3)\n")
    with pytest.raises(ConfigError, match=r"exited \(code 3\) before calling app.run\(\)"):
        _load.load_app(tmp_path / "c" / "main.py")
    with pytest.raises(ConfigError, match="no such file"):
        _load.load_app(tmp_path / "missing.py")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="without main.py"):
        _load.load_app(tmp_path / "empty")


def test_errors_from_the_file_pass_through(tmp_path):
    write_app(tmp_path, NODES + 'app = EdgeApp("dup")\napp.node(Cam, name="cam")\n'
                               'app.node(Det, name="cam")\n')
    with pytest.raises(GraphError, match="duplicate node name"):
        _load.load_app(tmp_path / "main.py")
    write_app(tmp_path, "import not_a_module_anywhere_x\n")
    with pytest.raises(ModuleNotFoundError) as info:
        _load.load_app(tmp_path / "main.py")
    assert info.value.__notes__ == [f"while loading {tmp_path / 'main.py'}"]


def test_run_file_calls_the_action_in_place_of_the_run_and_the_file_goes_on(tmp_path):
    write_app(tmp_path, NODES + '''
app = EdgeApp("runme")
app.node(Cam, name="cam")
if __name__ == "__main__":
    code = app.run()
    AFTER = code
    import sys
    sys.modules["__main__"].AFTER_SEEN = True
''')
    seen = []

    def action(app, args):
        seen.append((app.name, args, sys.modules["__main__"].__file__))
        return 7
    assert _load.run_file(tmp_path / "main.py", ["--frames", "3"], action) == 7
    assert seen == [("runme", ["--frames", "3"], str(tmp_path / "main.py"))]


def test_run_file_needs_a_run(tmp_path):
    write_app(tmp_path, NODES + 'app = EdgeApp("never")\napp.node(Cam, name="cam")\n')
    with pytest.raises(ConfigError, match="never called app.run"):
        _load.run_file(tmp_path / "main.py", [], lambda app, args: 0)
