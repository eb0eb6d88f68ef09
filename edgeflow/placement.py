"""Where a node runs, and which route each edge takes: shared memory, TCP to the gateway, or Redis.

A host is identified by what decides whether two processes can share memory, not by its hostname (containers
share hostnames and hide each other's): the kernel's boot id, the IPC namespace, and the /dev/shm mount. Two
processes with the same identity can still fail to attach each other's ring (a private /dev/shm), so the
shared-memory route is confirmed by attaching, and falls back to the network otherwise.

Routes, per edge (source -> target):
    same host                       -> shm
    target is a gateway elsewhere   -> tcp   (direct to the gateway, no broker hop)
    otherwise                       -> redis (dual Redis when the broker is a DualRedisBroker)
"""

from __future__ import annotations

import dataclasses
import os
import socket


@dataclasses.dataclass(frozen=True)
class HostIdentity:
    """What must match for two processes to share memory."""
    boot_id: str
    ipc_ns: str
    shm_dev: int
    hostname: str

    @property
    def key(self) -> str:
        """A string equal for processes that can share memory (hostname excluded on purpose)."""
        return f"{self.boot_id}/{self.ipc_ns}/{self.shm_dev}"

    def difference(self, other: "HostIdentity") -> str | None:
        """Why ``other`` is another host, in words; None when it is this one."""
        if self.boot_id != other.boot_id:
            return "other host: different kernel boot id"
        if self.ipc_ns != other.ipc_ns:
            return "other host: different IPC namespace"
        if self.shm_dev != other.shm_dev:
            return "other host: different /dev/shm"
        return None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "HostIdentity":
        return cls(str(data["boot_id"]), str(data["ipc_ns"]), int(data["shm_dev"]), str(data["hostname"]))


def this_host() -> HostIdentity:
    """The identity of the host (in the shared-memory sense) this process runs on."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot_id = f.read().strip()
    try:
        shm_dev = os.stat("/dev/shm").st_dev
    except OSError:
        shm_dev = -1
    return HostIdentity(boot_id, os.readlink("/proc/self/ns/ipc"), shm_dev, socket.gethostname())


@dataclasses.dataclass(frozen=True)
class Route:
    """The route of one edge and why it was chosen."""
    transport: str          # "shm", "tcp", "redis" or "dual-redis"
    reason: str

    def describe(self, source: str, target: str, qos: str) -> str:
        """The log line: ``cam -> log: redis (other host: different IPC namespace), DURABLE``."""
        return f"{source} -> {target}: {self.transport} ({self.reason}), {qos}"


def choose_route(source_host: HostIdentity | None, target_host: HostIdentity | None, *, target_kind: str,
                 broker_kind: str | None, gateway_tcp: str | None = None) -> Route:
    """The route between two placed nodes (None for a host that is not known yet: no route decided)."""
    if source_host is None or target_host is None:
        return Route("pending", "waiting for both ends to register")
    why = source_host.difference(target_host)
    if why is None:
        return Route("shm", "same host")
    if target_kind == "gateway" and gateway_tcp:
        return Route("tcp", f"{why}; direct to the gateway at {gateway_tcp}")
    if broker_kind is None:
        return Route("unroutable", f"{why}, and the app has no broker")
    return Route(broker_kind, why)
