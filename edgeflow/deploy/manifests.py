"""Kubernetes objects for a Graph, as plain dicts: pure (no I/O, no clock, no randomness).

    objects = build(graph, DeployConfig(image="docker.io/me/demo:sha-1234", namespace="demo",
                                        password="...", file="main.py"))

What comes out, in order:

- the Namespace; a Secret (``<app>-redis``: key ``password``, and ``gateway-token`` when the app has a gateway,
  see "The gateway's token" below) and a ConfigMap (``<app>-config``) with the
  broker addresses and the app's identity (EDGEFLOW_APP, REDIS_HOST, REDIS_PORT, DATA_REDIS_HOST/PORT,
  GATEWAY_HOST, GATEWAY_TCP_PORT, GATEWAY_HTTP_PORT);
- the control Redis, and the data Redis for a DualRedisBroker: a Deployment and a Service each, on nodes
  labelled ``edgeflow.io/role=infra``, password from the Secret. The control Redis is there even when the app
  has no broker: in a cluster every node has its own Pod, so frames between them cross Pods;
- per node a Deployment running ``edgeflow run FILE --node <name as in the app>``, ``replicas`` from the node,
  ``nodeSelector edgeflow.io/device=<device>`` when the node has a device; nodes of one shared-memory group
  (``group="vision"``) are containers of one Pod instead (one Deployment per group, ``shareProcessNamespace``:
  the ring finds dead readers by pid, which needs one PID namespace), so their links stay zero-copy;
- a node's container runs the project's image, or the image of its node.toml ``[build]`` table
  (``DeployConfig.images``); node.toml's ``[runtime] gpu = true`` puts ``nvidia.com/gpu: 1`` in its limits;
- for a gateway, a ClusterIP Service (HTTP and the TCP frame port, for the other nodes) and, when it has a
  ``node_port``, a NodePort Service for the dashboard.

Every Pod mounts a memory-backed emptyDir at /dev/shm sized from the rings its containers write:

    sizeLimit = sum over rings of slots x round_up(frame_bytes, 4 KiB) x SHM_MARGIN, at least SHM_MIN_MIB

One ring per output stream (per replica, per channel) of each node that has outgoing links; ``slots`` is the
node option ``slots`` or 8 (the ring's default), ``frame_bytes`` the node option ``frame_bytes`` or
1920x1080x3.
SHM_MARGIN is 2 because a ring that meets a larger frame maps its next generation before the old one goes.
The memory counts against the writing container's memory, so its requests and limits include it.

The gateway's token (docs/security.md): every node container of an app with a gateway gets
``EDGEFLOW_GATEWAY_TOKEN`` from a Secret (secretKeyRef), so the gateway's web API, streams and TCP ingest are
protected and every sender authenticates; the gateway container also gets ``EDGEFLOW_BIND=0.0.0.0`` (its
Services must reach it; allowed because the token is there). Without ``DeployConfig.gateway_token`` the token
is derived from the Redis password (HMAC-SHA256, so it is as random as the password, stays the same across
redeploys as the password does, and reveals nothing of it) and goes into the ``<app>-redis`` Secret as key
``gateway-token``. A token given in ``DeployConfig.gateway_token`` is never written anywhere: the containers
refer to a Secret ``<app>-gateway-token`` (key ``token``) that the operator creates
(``gateway_secret_command`` says how, without the value).

Names: every object name and label value goes through ``dns_name`` (one place). Labels: the
``app.kubernetes.io/*`` set (name, instance, component, part-of, managed-by=edgeflow) everywhere, plus
``edgeflow.io/node`` on a node's Pods (``edgeflow.io/group`` on a group's). ``edgeflow clean`` deletes by
``app.kubernetes.io/managed-by=edgeflow,app.kubernetes.io/instance=<app>``; the Namespace carries no instance
label, so cleaning one app never deletes a namespace another app (or anything else) lives in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
import re
from typing import Any, Iterable

from edgeflow.config import DEFAULT_GATEWAY_HTTP_PORT, DEFAULT_GATEWAY_TCP_PORT
from edgeflow.errors import ConfigError

MANAGED_BY = "edgeflow"
SHM_SLOTS = 8                          # the ring's default slot count (Publisher(slots=8))
DEFAULT_FRAME_BYTES = 1920 * 1080 * 3  # a full-HD BGR frame: the largest frame the examples send
SHM_MARGIN = 2.0
SHM_MIN_MIB = 16                       # Python's multiprocessing semaphores live in /dev/shm too
PAGE = 4096
MIB = 1024 * 1024
APP_UID = 10001                        # the image's user (Dockerfile: USER 10001:10001)
REDIS_IMAGE = "redis:7.4-alpine"
REDIS_UID, REDIS_GID = 999, 1000       # the redis user of the alpine image
REDIS_PORT = 6379
HTTP_PORT, TCP_PORT = DEFAULT_GATEWAY_HTTP_PORT, DEFAULT_GATEWAY_TCP_PORT   # 8000, 8080 (the original's)
GPU_RESOURCE = "nvidia.com/gpu"        # what node.toml's [runtime] gpu = true asks for (NVIDIA device plugin)
NODE_PORT_RANGE = (30000, 32767)       # the API server's default --service-node-port-range
SECRET_KEY = "password"
TOKEN_KEY = "gateway-token"            # the generated gateway token's key in the <app>-redis Secret
GIVEN_TOKEN_KEY = "token"              # the key of the operator's <app>-gateway-token Secret (a given token)
WORKDIR = "/app"

_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

# Liveness and readiness of a node container: a process of this Pod runs `... --node <name> [--replica i]`.
# Plain Python reading /proc, so a probe costs a few ms and never imports edgeflow (or numpy); it skips its
# own pid, whose command line holds the same words. In a group's Pod (one PID namespace) it finds its node
# among the other containers' processes.
PROBE = (
    "import os,sys\n"
    "w=('\\0'.join(sys.argv[1:])+'\\0').encode()\n"
    "me=str(os.getpid())\n"
    "def hit(p):\n"
    "    try:\n"
    "        return p!=me and w in open('/proc/'+p+'/cmdline','rb').read()\n"
    "    except OSError:\n"
    "        return False\n"
    "sys.exit(0 if any(hit(p) for p in os.listdir('/proc') if p.isdigit()) else 1)\n"
)


@dataclasses.dataclass(frozen=True)
class DeployConfig:
    """What ``build`` needs besides the Graph.

    Attributes:
        image: the project's image reference (every node runs it, unless ``images`` names another).
        namespace: where everything goes (a DNS label).
        password: the Redis password the Secret carries (letters and digits: it is put into URLs).
        file: the pipeline file inside the image, relative to WORKDIR (``main.py``).
        pull_policy: imagePullPolicy of the node containers.
        images: node name -> its own image (a node.toml ``[build]`` table's), for the nodes not on ``image``.
        gateway_token: a gateway token the operator chose (e.g. from $EDGEFLOW_GATEWAY_TOKEN at deploy time):
            it is never written into a manifest (see the module docstring); None: one derived from the
            password, carried by the ``<app>-redis`` Secret.
    """

    image: str
    namespace: str
    password: str
    file: str = "main.py"
    pull_policy: str = "IfNotPresent"
    images: dict[str, str] = dataclasses.field(default_factory=dict, hash=False)
    gateway_token: str | None = dataclasses.field(default=None, repr=False)    # never shown


# -- names -----------------------------------------------------------------------------------------------

def dns_name(raw: str, taken: set[str] | None = None, max_len: int = 63) -> str:
    """The one place names become Kubernetes names: a DNS label (RFC 1035, so Services accept it too).

    Lowercase, ``_`` (and anything else outside ``[a-z0-9-]``) becomes ``-``, leading and trailing ``-`` go;
    a name not starting with a letter gets ``ef-`` in front. Longer than ``max_len`` (63), or already in
    ``taken``, it is cut and gets ``-`` plus 6 hex digits of a hash of ``raw``, so it stays unique and stable.
    The result is added to ``taken``.

    >>> dns_name("fake_camera")
    'fake-camera'
    """
    name = re.sub(r"[^a-z0-9-]", "-", raw.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"ef-{name}".rstrip("-")
    if len(name) > max_len or (taken is not None and name in taken):
        digest = hashlib.sha1(raw.encode()).hexdigest()
        for k in range(0, len(digest) - 6):
            suffix = digest[k:k + 6]
            candidate = f"{name[:max_len - 7].rstrip('-')}-{suffix}"
            if taken is None or candidate not in taken:
                name = candidate
                break
    if taken is not None:
        taken.add(name)
    return name


def labels(app: str, name: str, component: str) -> dict[str, str]:
    """The ``app.kubernetes.io/*`` labels of one workload (``name``: the workload's DNS name)."""
    instance = dns_name(app)
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": instance,
            "app.kubernetes.io/component": component, "app.kubernetes.io/part-of": instance,
            "app.kubernetes.io/managed-by": MANAGED_BY}


def selector(app: str) -> str:
    """The label selector of everything ``build`` makes for ``app`` (the Namespace aside)."""
    return f"app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/instance={dns_name(app)}"


def secret_name(app: str) -> str:
    """The Secret holding the Redis password (``edgeflow deploy`` reuses the one it wrote before)."""
    return dns_name(f"{app}-redis")


def gateway_secret_name(app: str) -> str:
    """The Secret the operator creates for a given gateway token (``DeployConfig.gateway_token``)."""
    return dns_name(f"{app}-gateway-token")


def derived_token(app: str, password: str) -> str:
    """The generated gateway token: HMAC-SHA256 of the app's name under the Redis password (48 hex digits).
    Pure: the same password gives the same token, so a redeploy (which keeps the password) keeps it."""
    return hmac.new(password.encode(), f"edgeflow-gateway-token/1:{app}".encode(),
                    hashlib.sha256).hexdigest()[:48]


def gateway_secret_command(graph: Any, cfg: DeployConfig) -> str | None:
    """For a given token: the command that creates its Secret, with the value left to the shell
    (``$EDGEFLOW_GATEWAY_TOKEN``), so printing it shows no secret; None otherwise."""
    if cfg.gateway_token is None or not any(spec.kind == "gateway" for spec in graph.nodes):
        return None
    return (f"kubectl create secret generic {gateway_secret_name(graph.app)} -n {cfg.namespace} "
            f"--from-literal={GIVEN_TOKEN_KEY}=\"$EDGEFLOW_GATEWAY_TOKEN\"")


# -- sizing ----------------------------------------------------------------------------------------------

def _int_option(spec: Any, key: str, default: int, minimum: int) -> int:
    value = spec.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"node {spec.name!r}: option {key}={value!r} must be an integer >= {minimum}")
    return value


def ring_bytes(graph: Any, spec: Any, replicas: int | None = None) -> int:
    """Bytes of /dev/shm the rings of ``replicas`` replicas of ``spec`` may take (module docstring)."""
    streams = {edge.channel for edge in graph.outputs_of(spec.name)}
    if not streams:
        return 0
    slots = _int_option(spec, "slots", SHM_SLOTS, 3)
    frame = _int_option(spec, "frame_bytes", DEFAULT_FRAME_BYTES, 1)
    per_ring = slots * (math.ceil(frame / PAGE) * PAGE)
    count = len(streams) * (spec.replicas if replicas is None else replicas)
    return int(per_ring * count * SHM_MARGIN)


def _mib(nbytes: int) -> int:
    return max(SHM_MIN_MIB, math.ceil(nbytes / MIB))


# -- workloads -------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Workload:
    """One Deployment of nodes: a single node, or every node of one shared-memory group."""

    name: str                 # DNS name of the Deployment
    nodes: tuple[Any, ...]    # NodeSpecs, in graph order
    group: str | None

    @property
    def device(self) -> str | None:
        """The nodeSelector value: the (one) device of its nodes."""
        devices = {spec.device for spec in self.nodes if spec.device is not None}
        return next(iter(devices)) if devices else None


def workloads(graph: Any, taken: set[str] | None = None) -> list[Workload]:
    """The node Deployments of ``graph`` in graph order (a group where its first node is).

    Raises:
        ConfigError: a group whose nodes ask for different devices, or that holds two gateways.
    """
    taken = set() if taken is None else taken
    members: dict[str, list[Any]] = {}
    order: list[tuple[str | None, Any]] = []
    for spec in graph.nodes:
        if spec.group is None:
            order.append((None, spec))
        elif spec.group not in members:
            members[spec.group] = [spec]
            order.append((spec.group, None))
        else:
            members[spec.group].append(spec)
    out = []
    for group, spec in order:
        if group is None:
            out.append(Workload(dns_name(f"{graph.app}-{spec.name}", taken), (spec,), None))
        else:
            out.append(_group_workload(graph.app, group, members[group], taken))
    return out


def _group_workload(app: str, group: str, specs: list[Any], taken: set[str]) -> Workload:
    devices = sorted({spec.device for spec in specs if spec.device is not None})
    if len(devices) > 1:
        raise ConfigError(f"group {group!r}: its nodes ask for devices {', '.join(devices)}; the nodes of "
                          "one group share one Pod, so they run on one device")
    gateways = [spec.name for spec in specs if spec.kind == "gateway"]
    if len(gateways) > 1:
        raise ConfigError(f"group {group!r}: gateways {', '.join(gateways)} would share one Pod and both "
                          f"listen on port {HTTP_PORT}; put them in different groups")
    return Workload(dns_name(f"{app}-{group}", taken), tuple(specs), group)


# -- the objects -----------------------------------------------------------------------------------------

def build(graph: Any, cfg: DeployConfig) -> list[dict[str, Any]]:
    """Every Kubernetes object of ``graph`` (see the module docstring), as dicts in apply order.

    Raises:
        ConfigError: an invalid namespace, device label value, node_port outside the NodePort range, or a
            group that cannot be one Pod.
    """
    _check_config(graph, cfg)
    names = _Names(graph, cfg)
    objects = [namespace(cfg.namespace), secret(graph.app, names, cfg), config_map(graph, names, cfg)]
    objects += redis(graph.app, names.redis, "redis", names, cfg, data=False)
    if names.data_redis is not None:
        objects += redis(graph.app, names.data_redis, "redis-data", names, cfg, data=True)
    for work in names.workloads:
        objects.append(deployment(graph, work, names, cfg))
        objects += gateway_services(graph, work, names, cfg)
    return objects


class _Names:
    """Every object name of one build. Names are unique per kind (Kubernetes' rule), so a Redis Deployment,
    its Service and the Secret share ``<app>-redis``, and a gateway's Service is ``<app>-<gateway>``."""

    def __init__(self, graph: Any, cfg: DeployConfig) -> None:
        app = graph.app
        deployments: set[str] = set()
        services: set[str] = set()
        self.config = dns_name(f"{app}-config")
        self.secret = secret_name(app)
        self.redis = dns_name(f"{app}-redis", deployments)
        services.add(self.redis)
        dual = graph.broker is not None and getattr(graph.broker, "kind", "") == "dual-redis"
        self.data_redis = dns_name(f"{app}-redis-data", deployments) if dual else None
        if self.data_redis is not None:
            services.add(self.data_redis)
        self.workloads = workloads(graph, deployments)
        self.gateways: dict[str, tuple[str, str]] = {}   # node -> (ClusterIP Service, NodePort Service)
        for spec in graph.nodes:
            if spec.kind == "gateway":
                self.gateways[spec.name] = (dns_name(f"{app}-{spec.name}", services),
                                            dns_name(f"{app}-{spec.name}-nodeport", services))
        # where the containers find the gateway token: (Secret, key); None without a gateway
        self.token_ref: tuple[str, str] | None = None
        if self.gateways:
            self.token_ref = ((self.secret, TOKEN_KEY) if cfg.gateway_token is None
                              else (gateway_secret_name(app), GIVEN_TOKEN_KEY))


def _check_config(graph: Any, cfg: DeployConfig) -> None:
    if dns_name(cfg.namespace) != cfg.namespace:
        raise ConfigError(f"namespace {cfg.namespace!r} is not a DNS label (lowercase letters, digits and "
                          f"'-', at most 63): try {dns_name(cfg.namespace)!r}")
    if not re.fullmatch(r"[A-Za-z0-9]+", cfg.password):
        raise ConfigError("the Redis password must be letters and digits (it goes into redis:// URLs)")
    for spec in graph.nodes:
        if spec.device is not None and (len(spec.device) > 63 or not _LABEL_VALUE.fullmatch(spec.device)):
            raise ConfigError(f"node {spec.name!r}: device {spec.device!r} is not a Kubernetes label value "
                              "(at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends)")
        low, high = NODE_PORT_RANGE
        if spec.node_port is not None and not low <= spec.node_port <= high:
            raise ConfigError(f"node {spec.name!r}: node_port {spec.node_port} is outside Kubernetes' "
                              f"NodePort range {low}-{high}")


def _meta(name: str, cfg: DeployConfig, lab: dict[str, str], **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": cfg.namespace, "labels": lab}
    if annotations:
        meta["annotations"] = {f"edgeflow.io/{k.replace('_', '-')}": v for k, v in annotations.items()}
    return meta


def namespace(name: str) -> dict[str, Any]:
    """The Namespace; only ``managed-by`` (no instance label: see the module docstring)."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}}}


def secret(app: str, names: _Names, cfg: DeployConfig) -> dict[str, Any]:
    """The Redis password (both instances use it, as DualRedisBroker's data URL defaults to it), and the
    generated gateway token when the app has a gateway and no token was given."""
    data = {SECRET_KEY: cfg.password}
    if names.token_ref == (names.secret, TOKEN_KEY):
        data[TOKEN_KEY] = derived_token(app, cfg.password)
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(names.secret, cfg, labels(app, names.secret, "secret")),
            "stringData": data}


def config_map(graph: Any, names: _Names, cfg: DeployConfig) -> dict[str, Any]:
    """Broker addresses and the app's identity, as environment variables for every node container."""
    data = {"EDGEFLOW_APP": graph.app, "REDIS_HOST": names.redis, "REDIS_PORT": str(REDIS_PORT)}
    if names.data_redis is not None:
        data.update(DATA_REDIS_HOST=names.data_redis, DATA_REDIS_PORT=str(REDIS_PORT))
    if names.gateways:
        first = next(iter(names.gateways.values()))
        data.update(GATEWAY_HOST=first[0], GATEWAY_TCP_PORT=str(TCP_PORT), GATEWAY_HTTP_PORT=str(HTTP_PORT))
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(names.config, cfg, labels(graph.app, names.config, "config")), "data": data}


def _secret_env(name: str, names: _Names) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": names.secret, "key": SECRET_KEY}}}


def _restricted(read_only: bool = True) -> dict[str, Any]:
    """A container securityContext that satisfies the ``restricted`` Pod Security Standard."""
    return {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": read_only,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def _pod_security(uid: int, gid: int) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": gid, "fsGroup": gid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def redis(app: str, name: str, component: str, names: _Names, cfg: DeployConfig, *,
          data: bool) -> list[dict[str, Any]]:
    """A Redis Deployment and its Service. Control: append-only file on an emptyDir (it outlives a container
    restart, not the Pod). Data: payloads with a TTL, in memory only, bounded (oldest TTL evicted first)."""
    lab = labels(app, name, component)
    persist = (["--appendonly", "no", "--maxmemory", "384mb", "--maxmemory-policy", "volatile-ttl"] if data
               else ["--appendonly", "yes", "--appendfsync", "everysec"])
    ping = 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping | grep -q PONG'   # no password in argv
    container = {
        "name": "redis", "image": REDIS_IMAGE, "imagePullPolicy": "IfNotPresent",
        "command": ["redis-server"],
        "args": ["--port", str(REDIS_PORT), "--requirepass", "$(REDIS_PASSWORD)", "--dir", "/data",
                 "--save", "", *persist],
        "env": [_secret_env("REDIS_PASSWORD", names)],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                      "limits": {"memory": "512Mi" if data else "256Mi"}},
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "initialDelaySeconds": 10, "periodSeconds": 20},
        "readinessProbe": {"exec": {"command": ["sh", "-c", ping]}, "periodSeconds": 10, "timeoutSeconds": 5},
        "securityContext": _restricted(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    pod = {"metadata": {"labels": lab},
           "spec": {"automountServiceAccountToken": False, "nodeSelector": {"edgeflow.io/role": "infra"},
                    "securityContext": _pod_security(REDIS_UID, REDIS_GID), "containers": [container],
                    "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}]}}
    match = {k: lab[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, cfg, lab),
              "spec": {"replicas": 1, "strategy": {"type": "Recreate"},   # never two writers of one AOF
                       "selector": {"matchLabels": match}, "template": pod}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, cfg, lab),
               "spec": {"type": "ClusterIP", "selector": match,
                        "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis",
                                   "protocol": "TCP"}]}}
    return [deploy, service]


def _node_env(graph: Any, spec: Any, names: _Names, config_keys: Iterable[str]) -> list[dict[str, Any]]:
    """The ConfigMap's keys, the Redis password, and URLs built from them ($(VAR) refers to earlier vars)."""
    env = [_secret_env("REDIS_PASSWORD", names)]
    env += [{"name": key, "valueFrom": {"configMapKeyRef": {"name": names.config, "key": key}}}
            for key in config_keys]
    env.append({"name": "REDIS_URL", "value": "redis://:$(REDIS_PASSWORD)@$(REDIS_HOST):$(REDIS_PORT)/0"})
    if names.data_redis is not None:
        env.append({"name": "DATA_REDIS_URL",
                    "value": "redis://:$(REDIS_PASSWORD)@$(DATA_REDIS_HOST):$(DATA_REDIS_PORT)/0"})
    env += [{"name": "NODE_NAME", "value": spec.name}, {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "HOME", "value": "/tmp"}]
    if names.token_ref is not None:      # the gateway checks it; every other node sends with it
        secret_name_, key = names.token_ref
        env.append({"name": "EDGEFLOW_GATEWAY_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": secret_name_, "key": key}}})
    if spec.kind == "gateway":           # its Services must reach it; the token above protects it
        env.append({"name": "EDGEFLOW_BIND", "value": "0.0.0.0"})
    return env


def _resources(spec: Any, shm: int) -> dict[str, Any]:
    """Requests and limits; the node option ``resources`` (Kubernetes form) replaces them. No CPU limit:
    CFS throttling stalls a frame loop for whole periods, which shows up as latency spikes. A node with
    node.toml's ``[runtime] gpu = true`` gets ``nvidia.com/gpu: 1`` in its limits (extended resources are
    requested through limits; Kubernetes sets the request equal)."""
    given = spec.options.get("resources")
    if given is not None:
        if not isinstance(given, dict):
            raise ConfigError(f"node {spec.name!r}: option resources must be a mapping "
                              "({'requests': {...}, 'limits': {...}})")
        out = {key: dict(value) if isinstance(value, dict) else value for key, value in given.items()}
    else:
        mib = math.ceil(shm / MIB)
        out = {"requests": {"cpu": "100m", "memory": f"{128 + mib}Mi"},
               "limits": {"memory": f"{512 + mib}Mi"}}
    if getattr(spec, "gpu", False):
        out.setdefault("limits", {}).setdefault(GPU_RESOURCE, 1)
    return out


def _node_container(graph: Any, spec: Any, replica: int | None, names: _Names, cfg: DeployConfig,
                    config_keys: list[str], taken: set[str]) -> dict[str, Any]:
    run = ["--node", spec.name] + ([] if replica is None else ["--replica", str(replica)])
    suffix = "" if replica is None else f"-r{replica}"
    container: dict[str, Any] = {
        "name": dns_name(f"{spec.name}{suffix}", taken),
        "image": cfg.images.get(spec.name, cfg.image), "imagePullPolicy": cfg.pull_policy, "workingDir": WORKDIR,
        "command": ["edgeflow"], "args": ["run", cfg.file, *run],
        "env": _node_env(graph, spec, names, config_keys),
        "resources": _resources(spec, ring_bytes(graph, spec, 1)),    # a container runs one replica
        # sinks keep a writable root: they may write files next to the code (the image lets them)
        "securityContext": _restricted(read_only=spec.kind != "sink"),
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    if spec.kind == "gateway":
        container["ports"] = [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                              {"name": "ingest", "containerPort": TCP_PORT, "protocol": "TCP"}]
        container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"},
                                      "initialDelaySeconds": 10, "periodSeconds": 20}
        container["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10}
    else:
        probe = {"exec": {"command": ["python", "-c", PROBE, *run]}, "timeoutSeconds": 5}
        container["livenessProbe"] = {**probe, "initialDelaySeconds": 10, "periodSeconds": 20}
        container["readinessProbe"] = {**probe, "initialDelaySeconds": 2, "periodSeconds": 10}
    return container


def deployment(graph: Any, work: Workload, names: _Names, cfg: DeployConfig) -> dict[str, Any]:
    """The Deployment of one node, or of one shared-memory group (one container per node and replica)."""
    config_keys = list(config_map(graph, names, cfg)["data"])
    taken: set[str] = set()
    containers, shm = [], 0
    for spec in work.nodes:
        if work.group is None:
            containers.append(_node_container(graph, spec, None, names, cfg, config_keys, taken))
        else:
            # one Pod per group: a node's replicas are containers of it, each with its own --replica
            replicas = [None] if spec.replicas == 1 else list(range(spec.replicas))
            containers += [_node_container(graph, spec, r, names, cfg, config_keys, taken) for r in replicas]
        shm += ring_bytes(graph, spec, 1 if work.group is None else None)   # a group's Pod runs them all
    first = work.nodes[0]
    component = "group" if work.group else ("gateway" if first.kind == "gateway" else "node")
    lab = labels(graph.app, work.name, component)
    pod_labels = dict(lab)
    if work.group is None:
        pod_labels["edgeflow.io/node"] = dns_name(first.name)
    else:
        pod_labels["edgeflow.io/group"] = dns_name(work.group)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,      # nodes never talk to the API server
        "securityContext": _pod_security(APP_UID, APP_UID),
        "terminationGracePeriodSeconds": 15,        # Ctrl-C's path: drain, close rings, exit
        "containers": containers,
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{_mib(shm)}Mi"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    if work.group is not None:
        pod_spec["shareProcessNamespace"] = True
    if work.device is not None:
        pod_spec["nodeSelector"] = {"edgeflow.io/device": work.device}
    match = {k: lab[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    notes = {"app": graph.app, "nodes": ",".join(spec.name for spec in work.nodes)}
    if work.group is not None:
        notes["group"] = work.group
    pod_notes = {f"edgeflow.io/{k}": v for k, v in notes.items()}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(work.name, cfg, lab, **notes),
            "spec": {"replicas": first.replicas if work.group is None else 1,
                     "selector": {"matchLabels": match},
                     "template": {"metadata": {"labels": pod_labels, "annotations": pod_notes},
                                  "spec": pod_spec}}}


def gateway_services(graph: Any, work: Workload, names: _Names, cfg: DeployConfig) -> list[dict[str, Any]]:
    """For each gateway of the workload: a ClusterIP Service (HTTP and frames) and, with a ``node_port``, a
    NodePort Service for the dashboard (only HTTP leaves the cluster)."""
    out = []
    workload_labels = labels(graph.app, work.name, "gateway")
    match = {k: workload_labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    for spec in work.nodes:
        if spec.kind != "gateway":
            continue
        inner, outer = names.gateways[spec.name]
        ports = [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                 {"name": "ingest", "port": TCP_PORT, "targetPort": "ingest", "protocol": "TCP"}]
        out.append({"apiVersion": "v1", "kind": "Service",
                    "metadata": _meta(inner, cfg, labels(graph.app, inner, "gateway"), node=spec.name),
                    "spec": {"type": "ClusterIP", "selector": match, "ports": ports}})
        if spec.node_port is not None:
            port = {"name": "http", "port": HTTP_PORT, "targetPort": "http", "nodePort": spec.node_port,
                    "protocol": "TCP"}
            out.append({"apiVersion": "v1", "kind": "Service",
                        "metadata": _meta(outer, cfg, labels(graph.app, outer, "gateway"), node=spec.name),
                        "spec": {"type": "NodePort", "selector": match, "ports": [port]}})
    return out
