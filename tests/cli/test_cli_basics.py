"""Issue 8: the `edgeflow` group: lazy subcommands, --help everywhere, exit codes, one-line errors, timing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from _clitools import ROOT, cli_env, edgeflow, stderr_lines, timed
from edgeflow.cli import COMMANDS, cli

HEAVY = ("numpy", "cv2", "aiohttp", "redis", "yaml", "kubernetes_validate")


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output and name in result.output


@pytest.mark.parametrize("name", ["run", "graph", "deploy", "bench", "doctor"])
def test_help_in_a_real_process(name):
    out = edgeflow(name, "-h")
    assert out.returncode == 0
    assert out.stdout.startswith(f"Usage: python -m edgeflow.cli {name}") or "Usage:" in out.stdout


def test_version():
    import edgeflow as ef
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"edgeflow {ef.__version__}"


def test_unknown_command_and_bad_option_exit_2():
    assert CliRunner().invoke(cli, ["nope"]).exit_code == 2
    assert CliRunner().invoke(cli, ["graph", "--format", "xml", "main.py"]).exit_code == 2
    out = edgeflow("nope")
    assert out.returncode == 2 and "No such command 'nope'" in out.stderr


def test_importing_the_cli_adds_nothing_heavy():
    """`import edgeflow.cli` imports click, and none of numpy, cv2, aiohttp, redis, yaml beyond what
    `import edgeflow` (the package's __init__, not the CLI's) already imports."""
    code = ("import sys; import edgeflow; base = set(sys.modules); import edgeflow.cli; "
            "print(','.join(sorted(m for m in set(sys.modules) - base if m.split('.')[0] in %r)))" % (HEAVY,))
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
    code = "import sys, edgeflow.cli; print(sorted(m for m in ('cv2', 'aiohttp') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_help_and_graph_are_fast():
    """The target is 0.5 s for both; the assertion is a sanity bound for a loaded 2-core machine."""
    help_s = timed("--help")
    graph_s = timed("graph", "examples/folder_style/main.py")
    quick_s = timed("graph", "examples/quickstart/main.py")
    print(f"\nedgeflow --help: {help_s:.3f} s; edgeflow graph (folder_style): {graph_s:.3f} s; "
          f"edgeflow graph (quickstart, imports cv2): {quick_s:.3f} s (target 0.5 s)")
    assert help_s < 2.0 and graph_s < 2.0 and quick_s < 2.0


def test_an_edgeflow_error_is_one_line_and_debug_adds_the_traceback(tmp_path):
    bad = tmp_path / "main.py"
    bad.write_text("from edgeflow import EdgeApp\napp = EdgeApp('x')\napp.link('a').to('b')\napp.run()\n")
    out = edgeflow("graph", str(bad))
    assert out.returncode == 2
    assert stderr_lines(out) == [next(l for l in stderr_lines(out) if l.startswith("GraphError: "))]
    debug = edgeflow("--debug", "graph", str(bad))
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("GraphError: ")


def test_any_other_exception_exits_1_with_one_line(tmp_path):
    bad = tmp_path / "main.py"
    bad.write_text("raise RuntimeError('boom in user code')\n")
    out = edgeflow("graph", str(bad))
    assert out.returncode == 1
    assert stderr_lines(out) == [f"RuntimeError: boom in user code (while loading {bad})"]


def test_console_script_entry_point_is_main():
    """pyproject declares edgeflow = "edgeflow.cli:main"."""
    import tomllib
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["edgeflow"] == "edgeflow.cli:main"
    code = "import sys; from edgeflow.cli import main; sys.argv = ['edgeflow', '--version']; main()"
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0 and out.stdout.startswith("edgeflow ")
