"""``edgeflow doctor``: check this machine for what EdgeFlow needs, and say how to fix each problem.

    edgeflow doctor                         every check, one line each, a fix under each problem
    edgeflow doctor --redis redis://h:6379  check that Redis instead of $REDIS_HOST:$REDIS_PORT
    edgeflow doctor --json                  the same as data

Each check is ``ok``, ``warn`` (works, but something is worth knowing) or ``fail`` (something EdgeFlow needs
is broken); the exit code is 1 when any check fails. Nothing is changed: the Redis check sends only PING and
INFO server, and stale segments are listed, not removed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Callable
import click

from edgeflow.config import DEFAULT_GATEWAY_HTTP_PORT, DEFAULT_GATEWAY_TCP_PORT, settings

SHM = "/dev/shm"
SHM_RECOMMENDED = 256 * 1024 * 1024      # a few rings of full-HD frames (8 slots of 6 MB = 50 MB each)
FRAME_HD = 1920 * 1080 * 3


@dataclasses.dataclass(frozen=True)
class Check:
    """One check's outcome: ``status`` is ok, warn or fail; ``fix`` says what to do when it is not ok."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        """The fields as a JSON-able dict."""
        return dataclasses.asdict(self)


def check_core() -> Check:
    """The compiled shared-memory ring imports."""
    try:
        from edgeflow._fast import ring
    except ImportError as exc:
        return Check("compiled core", "fail", f"edgeflow._fast.ring does not import: {exc}",
                     "build it: `pip install -e .` in the source checkout (needs a C compiler and Cython)")
    return Check("compiled core", "ok", f"edgeflow._fast.ring ({os.path.basename(ring.__file__)})")


def _mib(n: float) -> str:
    return f"{n / 1024 / 1024:,.0f} MiB"


def check_shm(path: str = SHM) -> Check:
    """/dev/shm exists, is writable, and has room for rings of full-HD frames."""
    fix_size = ("on Docker: `docker run --shm-size=1g ...`; in Kubernetes: mount an emptyDir with medium: "
                "Memory at /dev/shm (`edgeflow deploy` does); on a host: `mount -o remount,size=1G /dev/shm`")
    if not os.path.isdir(path):
        return Check("/dev/shm", "fail", f"{path} does not exist: shared-memory rings cannot be made",
                     fix_size)
    if not os.access(path, os.W_OK):
        return Check("/dev/shm", "fail", f"{path} is not writable by this user",
                     "make it writable (mode 1777)")
    st = os.statvfs(path)
    size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    detail = f"{_mib(size)}, {_mib(free)} free"
    if free < 8 * FRAME_HD:
        return Check("/dev/shm", "fail", f"{detail}: not enough for one ring of 8 full-HD frames (48 MiB)",
                     f"free space (stale segments below?) or make it larger: {fix_size}")
    if size < SHM_RECOMMENDED:
        return Check("/dev/shm", "warn", f"{detail}: small (a container's default is 64 MiB); each ring of "
                     "8 full-HD frames takes 48 MiB", fix_size)
    return Check("/dev/shm", "ok", detail)


def _rings(path: str) -> dict[str, list[str]]:
    """Ring name -> its segment files (``<ring>.ctl`` and ``<ring>.g<N>``) of every edgeflow.* segment."""
    rings: dict[str, list[str]] = {}
    for name in sorted(os.listdir(path)):
        if not name.startswith("edgeflow."):
            continue
        base, _, last = name.rpartition(".")
        if last == "ctl" or (last[:1] == "g" and last[1:].isdigit()):
            rings.setdefault(base, []).append(name)
    return rings


def check_stale(path: str = SHM) -> Check:
    """Segments whose writer died (or rings whose control segment is gone): memory nobody frees."""
    try:
        from edgeflow._fast import ring
    except ImportError:
        return Check("stale segments", "warn", "not checked: the compiled core does not import")
    if not os.path.isdir(path):
        return Check("stale segments", "warn", f"not checked: no {path}")
    stale, size = [], 0
    for base, files in _rings(path).items():
        status = ring.writer_of(base)[0] if f"{base}.ctl" in files else "orphan"
        if status in ("dead", "none", "orphan"):
            stale.append(base)
            for f in files:
                try:
                    size += os.stat(os.path.join(path, f)).st_size
                except OSError:
                    pass                        # removed while we looked
    if not stale:
        return Check("stale segments", "ok", "none (no edgeflow segment whose writer is dead)")
    apps = sorted({name.split(".")[1] for name in stale})
    shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
    return Check("stale segments", "warn",
                 f"{len(stale)} rings whose writer is dead ({_mib(size)}): {shown}",
                 "the next run of the app removes its own; or now, if none of its processes is left: "
                 + "; ".join(f"rm {path}/edgeflow.{app}.*" for app in apps[:3]))


def check_redis(url: str | None) -> Check:
    """PING and INFO server (read-only) on ``url``, or on $REDIS_HOST:$REDIS_PORT."""
    from edgeflow.comms.brokers import RedisBroker

    given = url is not None
    broker = RedisBroker(url) if given else RedisBroker()
    shown = broker.redacted()
    bad = "fail" if given else "warn"           # without --redis, one-host runs do not need Redis
    try:
        import redis
    except ImportError:
        return Check("redis", bad, "redis-py is not installed", "pip install redis")
    client = redis.Redis.from_url(broker.url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
        info = client.info("server")
    except redis.RedisError as exc:
        note = "" if given else " (needed only for runs across hosts)"
        return Check("redis", bad, f"{shown}: {type(exc).__name__}: {exc}{note}",
                     "start one (`redis-server`), or point REDIS_HOST/REDIS_PORT or --redis at yours")
    finally:
        client.close()
    version = str(info.get("redis_version", "?"))
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < 5:
        return Check("redis", "fail", f"{shown}: Redis {version}; EdgeFlow's streams need 5 or newer",
                     "upgrade Redis to 6 or newer")
    return Check("redis", "ok", f"{shown}: Redis {version}")


def check_port(var: str, default: int) -> Check:
    """The gateway port in ``var`` is free to listen on."""
    raw = str(settings.given(var) or default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        return Check(var, "fail", f"{var}={raw!r} is not a port number", f"set {var} to a port (1-65535)")
    port = int(raw)
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            return Check(var, "warn", f"port {port} is in use ({exc.strerror}): a gateway started here fails "
                         "(unless it is the gateway already running)", f"stop what listens on {port}, or set "
                         f"{var} to a free port")
    return Check(var, "ok", f"port {port} is free")


def check_tool(tool: str) -> Check:
    """docker (client and engine) or kubectl (client and current context): only deploy needs them."""
    from edgeflow.deploy import kubectl

    if kubectl.available(tool) is None:
        return Check(tool, "warn", "not installed (needed only by `edgeflow deploy`)",
                     f"install {tool}; `edgeflow deploy --dry-run --no-build` works without it")
    if tool == "docker":
        ok, text = kubectl.tool_version("docker", ["version", "--format", "{{.Server.Version}}"])
        if ok:
            return Check(tool, "ok", f"engine {text}")
        return Check(tool, "warn", f"the client is installed, the engine does not answer: {text}",
                     "start the docker engine, or deploy with --no-build and an image built elsewhere")
    ok, text = kubectl.tool_version("kubectl", ["version", "--client"])
    if not ok:
        return Check(tool, "warn", f"`kubectl version --client` failed: {text}", "reinstall kubectl")
    has_ctx, ctx = kubectl.tool_version("kubectl", ["config", "current-context"])
    if not has_ctx:
        return Check(tool, "warn", f"{text}; no current context ({ctx})",
                     "`kubectl config use-context <name>`, or pass --kube-context to deploy")
    return Check(tool, "ok", f"{text}; context {ctx}")


def run_checks(redis_url: str | None) -> list[Check]:
    """Every check, in the order they are shown; a check that raises becomes a failed check."""
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("compiled core", check_core), ("/dev/shm", check_shm), ("stale segments", check_stale),
        ("redis", lambda: check_redis(redis_url)),
        ("GATEWAY_HTTP_PORT", lambda: check_port("GATEWAY_HTTP_PORT", DEFAULT_GATEWAY_HTTP_PORT)),
        ("GATEWAY_TCP_PORT", lambda: check_port("GATEWAY_TCP_PORT", DEFAULT_GATEWAY_TCP_PORT)),
        ("docker", lambda: check_tool("docker")), ("kubectl", lambda: check_tool("kubectl"))]
    out = []
    for name, step in steps:
        try:
            out.append(step())
        except Exception as exc:  # noqa: BLE001 - a broken check is reported, the others still run
            out.append(Check(name, "fail", f"the check itself failed: {type(exc).__name__}: {exc}"))
    return out


def format_checks(checks: list[Check]) -> str:
    """One line per check (``ok``/``warn``/``FAIL``), the fix indented under each problem, then a verdict."""
    marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{marks[c.status]}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"      {'':<{width}}  fix: {c.fix}")
    failed = [c.name for c in checks if c.status == "fail"]
    warned = [c.name for c in checks if c.status == "warn"]
    lines.append("")
    lines.append(f"{len(failed)} failed ({', '.join(failed)})" if failed else
                 "no failures" + (f"; {len(warned)} warnings" if warned else ""))
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis", "redis_url", metavar="URL", help="Redis to check (default: $REDIS_HOST:$REDIS_PORT; "
              "then an unreachable Redis is a warning, with --redis a failure).")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_context
def doctor(ctx: click.Context, redis_url: str | None, as_json: bool) -> None:
    """Check the compiled core, /dev/shm, stale segments, Redis, the gateway's ports, docker and kubectl.

    Each problem comes with its fix. Exit code 1 when a check fails.
    """
    checks = run_checks(redis_url)
    if as_json:
        ok = not any(c.status == "fail" for c in checks)
        click.echo(json.dumps({"ok": ok, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        click.echo(format_checks(checks))
    if any(c.status == "fail" for c in checks):
        ctx.exit(1)
