"""The only module that runs ``kubectl`` or ``docker``.

Every function builds the command line first; with ``dry_run`` it prints ``$ <command>`` instead of running
it, so ``--dry-run`` shows exactly what would happen and needs neither tool installed.

Errors: a tool that is not installed is a ConfigError (exit code 2: install it, or use --dry-run /
--no-build); a command that fails is an EdgeFlowError (exit code 1) carrying the tool's last error line.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from edgeflow.errors import ConfigError, EdgeFlowError

Echo = Callable[[str], None]


def _echo_err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def available(tool: str) -> str | None:
    """The path of ``tool`` on PATH, or None."""
    return shutil.which(tool)


def _need(tool: str, hint: str) -> str:
    path = available(tool)
    if path is None:
        raise ConfigError(f"{tool} is not installed (not on PATH): {hint}")
    return path


def kubectl_cmd(args: Sequence[str], context: str | None = None) -> list[str]:
    """``kubectl [--context C] args...``"""
    return ["kubectl", *(["--context", context] if context else []), *args]


def run(cmd: list[str], *, dry_run: bool, echo: Echo = _echo_err, stdin: str | None = None,
        capture: bool = False, hint: str = "", timeout: float | None = None) -> str:
    """Run ``cmd`` (or print it with ``dry_run``); returns its stdout when ``capture``.

    Raises:
        ConfigError: the program is not installed.
        EdgeFlowError: it exited non-zero (its last stderr line in the message).
    """
    echo("$ " + shlex.join(cmd) + (" <<'EOF' (Dockerfile below)" if stdin and dry_run else ""))
    if dry_run:
        if stdin:
            echo("".join(f"    {line}\n" for line in stdin.splitlines()).rstrip("\n"))
        return ""
    exe = _need(cmd[0], hint or f"install {cmd[0]}, or pass --dry-run to only write the manifests")
    try:
        done = subprocess.run([exe, *cmd[1:]], input=stdin, text=True, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE)
    except subprocess.TimeoutExpired:
        raise EdgeFlowError(f"{shlex.join(cmd)}: no answer within {timeout:g} s") from None
    if done.stderr and not capture:
        sys.stderr.write(done.stderr)
    if done.returncode != 0:
        last = (done.stderr or "").strip().splitlines()
        raise EdgeFlowError(f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} failed (exit {done.returncode})"
                            + (f": {last[-1]}" if last else ""))
    return done.stdout or ""


# -- docker ----------------------------------------------------------------------------------------------

def build_image(image: str, context: Path, dockerfile_text: str | None, *, dry_run: bool,
                echo: Echo = _echo_err) -> None:
    """``docker build -t IMAGE`` the project folder; a generated Dockerfile goes in on stdin (``-f -``), so
    nothing is written into the project."""
    cmd = ["docker", "build", "-t", image]
    cmd += ["-f", "-", str(context)] if dockerfile_text is not None else [str(context)]
    run(cmd, dry_run=dry_run, echo=echo, stdin=dockerfile_text,
        hint="install docker, or build the image yourself and pass --no-build")


def push_image(image: str, *, dry_run: bool, echo: Echo = _echo_err) -> None:
    """``docker push IMAGE``."""
    run(["docker", "push", image], dry_run=dry_run, echo=echo,
        hint="install docker, or push the image yourself and pass --no-build")


# -- kubectl ---------------------------------------------------------------------------------------------

def apply(output: Path, *, context: str | None, dry_run: bool, echo: Echo = _echo_err) -> None:
    """``kubectl apply -f OUTPUT``: every generated file (the namespace file sorts first)."""
    run(kubectl_cmd(["apply", "-f", str(output)], context), dry_run=dry_run, echo=echo)


CLEAN_KINDS = "deployments,statefulsets,services,configmaps,secrets"
"""What deploy creates inside the namespace (the Namespace itself is left alone: others may live there)."""


def delete(namespace: str, selector: str, *, context: str | None, dry_run: bool,
           echo: Echo = _echo_err) -> None:
    """``kubectl delete KINDS -n NS -l SELECTOR``: only objects carrying deploy's labels for this app."""
    run(kubectl_cmd(["delete", CLEAN_KINDS, "-n", namespace, "-l", selector, "--ignore-not-found"],
                    context), dry_run=dry_run, echo=echo)


def logs_cmd(namespace: str, selector: str, *, container: str | None, follow: bool, tail: int | None,
             context: str | None) -> list[str]:
    """The ``kubectl logs`` command for every Pod the selector picks, each line prefixed with its Pod."""
    args = ["logs", "-n", namespace, "-l", selector, "--prefix", "--max-log-requests", "20"]
    args += ["-c", container] if container else ["--all-containers"]
    args += ["-f"] if follow else []
    args += ["--tail", str(tail)] if tail is not None else []
    return kubectl_cmd(args, context)


def stream(cmd: list[str], *, dry_run: bool, echo: Echo = _echo_err) -> int:
    """Run ``cmd`` with its output going straight to ours (``kubectl logs -f``); returns its exit code."""
    echo("$ " + shlex.join(cmd))
    if dry_run:
        return 0
    exe = _need(cmd[0], "install kubectl, or pass --dry-run to print the command")
    try:
        return subprocess.call([exe, *cmd[1:]])
    except KeyboardInterrupt:
        return 130


def node_port_url(namespace: str, selector: str, *, context: str | None, dry_run: bool,
                  echo: Echo = _echo_err) -> str | None:
    """``http://<a cluster node's address>:<NodePort>/dashboard`` of the gateway's NodePort Service."""
    jsonpath = '{.items[?(@.spec.type=="NodePort")].spec.ports[0].nodePort}'
    port = run(kubectl_cmd(["get", "services", "-n", namespace, "-l", selector, "-o", f"jsonpath={jsonpath}"],
                           context), dry_run=dry_run, echo=echo, capture=True, timeout=20).split()
    port = port[0] if port else ""
    where = '{.items[0].status.addresses[?(@.type=="ExternalIP")].address}'
    host = run(kubectl_cmd(["get", "nodes", "-o", f"jsonpath={where}"], context),
               dry_run=dry_run, echo=echo, capture=True, timeout=20).strip()
    if not host and not dry_run:
        where = '{.items[0].status.addresses[?(@.type=="InternalIP")].address}'
        host = run(kubectl_cmd(["get", "nodes", "-o", f"jsonpath={where}"], context),
                   dry_run=dry_run, echo=echo, capture=True, timeout=20).strip()
    if dry_run:
        return None
    if not port:
        raise EdgeFlowError(f"no NodePort Service of a gateway in namespace {namespace!r} "
                            f"(selector {selector}): was the app deployed there, with node_port set?")
    return f"http://{host.split()[0] if host else 'localhost'}:{port}/dashboard"


def tool_version(tool: str, args: Sequence[str], timeout: float = 5.0) -> tuple[bool, str]:
    """(ok, the first line of its output or of its error) of ``tool args...``; for ``edgeflow doctor``."""
    exe = available(tool)
    if exe is None:
        return False, "not installed"
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    text = (done.stdout.strip() or done.stderr.strip()).splitlines()
    first = text[0] if text else ""
    if done.returncode != 0:
        err = done.stderr.strip().splitlines()
        return False, err[-1] if err else f"exit {done.returncode}"
    return True, first
