"""Routing in a distributed run (``python main.py --node X`` with a broker): which edges of this node go over
shared memory, Redis or TCP, decided from the registry and decided again every ROUTE_PERIOD seconds.

Consumer side, per input source replica: same host -> its shm ring; a gateway -> frames arrive on the gateway's
TCP server; otherwise -> a Redis subscription (group = this node, shared by its replicas).
Producer side: it always writes its shm ring (local consumers); it publishes to Redis only while some consumer
on another host reads it over Redis, and sends over TCP to a gateway on another host. A purely local pipeline
costs Redis nothing.

Known limit: replicas of one node spread over several hosts share the work among those reading the same route
(the shm group on one host, the Redis group across hosts); a frame can reach one replica of each.

The gateway's TCP ingest (docs/security.md). It starts at the gateway's first refresh, once the node's
``configure()`` added its interfaces and their servers run, so that it gets the real token; the gateway
registers only then, so no peer ever sees it without its TCP address. Its token: the interfaces' (e.g.
``WebInterface(token=...)``), else $EDGEFLOW_GATEWAY_TOKEN, else an automatic one (``secrets.token_urlsafe``)
shared through the control Redis (``edgeflow:{app}:gateway_token``, see registry.py), so cross-host TCP is
authenticated without configuration. It binds $EDGEFLOW_BIND when set, else 127.0.0.1 when the address other
hosts would reach it at is loopback (everything on this machine), else 0.0.0.0: other hosts must reach it,
and it always has a token. The registry entry says where it listens (``gateway_tcp``) and whether its token is
shared (``gateway_auth``: "shared") or configured ("configured": senders need $EDGEFLOW_GATEWAY_TOKEN).
Senders (``_ensure_tcp``) use the shared token for a "shared" gateway (re-read every refresh: a gateway that
came back with a new token gets new senders), else $EDGEFLOW_GATEWAY_TOKEN.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from edgeflow import placement
from edgeflow.config import is_loopback, require_token, settings
from edgeflow.qos import QoS
from edgeflow.runtime.inputs import Input
from edgeflow.runtime.plan import group_name, output_topic
from edgeflow.runtime.registry import Registry, host_of
from edgeflow.transport import shm

ROUTE_PERIOD = 1.0
STATS_CACHE_S = 0.5         # a gateway reads the others' statistics from Redis at most this often
REMOTE_GRACE = 10.0         # seconds a remote route outlives its consumer's absence from the registry

log = logging.getLogger("edgeflow.runtime")


def tcp_bind_host(broker) -> str:
    """The address the gateway's TCP ingest binds in a distributed run (module docstring)."""
    given = settings.EDGEFLOW_BIND
    if given:
        return given
    return "127.0.0.1" if is_loopback(advertised_address(broker)) else "0.0.0.0"


def advertised_address(broker) -> str:
    """The address other hosts reach this one at: $GATEWAY_HOST when set, else the local address of the route
    to the broker."""
    host = settings.given("GATEWAY_HOST")
    if host and host != "localhost":
        return host
    target = broker.address.host if hasattr(broker, "address") else "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((target, 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


class Router:
    """Keeps this node replica's remote inputs and outputs in line with where its peers run."""

    def __init__(self, runner, graph) -> None:
        self.runner = runner
        self.graph = graph
        self.broker = graph.broker
        self.broker_kind = self.broker.kind
        self.me = placement.this_host()
        self.node = graph.node(runner.name)
        self.tcp_server = None
        self.gateway_tcp = None
        self.redis_inputs: dict[str, object] = {}         # topic -> RedisSubscriber
        self.redis_pub = None
        self.tcp_senders: dict[str, object] = {}          # "host:port" -> TcpSender
        self.routes: dict[tuple[str, str], placement.Route] = {}
        self._next = 0.0
        self._redis_seen = self._tcp_seen = 0.0
        self._peer_stats: dict = {}
        self._transports: dict = {}
        self._peer_stats_at = -STATS_CACHE_S
        self.tcp_token_source: str | None = None          # where the TCP ingest's token came from
        self._sender_tokens: dict[str, str | None] = {}   # "host:port" -> the token its TcpSender uses
        self._warned: set[str] = set()
        # a gateway's TCP ingest waits for its interfaces (their token): see the module docstring
        self._gateway_pending = self.node.kind == "gateway"
        self._tcp_inputs_wanted = False
        entry = {"node": runner.name, "replica": runner.job.replica, "kind": self.node.kind, "pid": os.getpid(),
                 "version": _version(), "host": self.me.to_dict(), "gateway_tcp": None}
        self.registry = Registry(self.broker, graph.app, entry)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Register and decide the routes now; a gateway does both at its first refresh (its TCP ingest
        needs the interfaces its ``configure()`` adds, after this)."""
        if self._gateway_pending:
            return
        self.registry.start()
        self.refresh(force=True)

    def close(self, final_stats: dict | None = None) -> None:
        """Leave the registry (with this replica's final statistics) and close every remote route."""
        self.registry.close(final_stats)
        for sub in self.redis_inputs.values():
            sub.close()
        if self.redis_pub is not None:
            self.redis_pub.close()
        for sender in self.tcp_senders.values():
            sender.close()
        if self.tcp_server is not None:
            self.tcp_server.close()

    def _open_gateway(self) -> None:
        """The gateway's TCP ingest, its inputs, and its registration (the first refresh: its servers run).

        Raises:
            ConfigError: the TCP port is taken, or the ingest would listen beyond loopback without a token.
        """
        self._gateway_pending = False
        self._start_tcp_server()
        self.registry.entry["gateway_tcp"] = self.gateway_tcp
        self.registry.entry["gateway_auth"] = "shared" if self.tcp_token_source == "auto" else "configured"
        if self._tcp_inputs_wanted:
            self._add_tcp_inputs()
        self.registry.start()

    def _ingest_token(self) -> tuple[str | None, str]:
        """(token, where it came from) for the TCP ingest: the interfaces', $EDGEFLOW_GATEWAY_TOKEN, or auto."""
        for server in getattr(self.runner, "servers", ()):          # the interfaces the node's configure() added
            token = getattr(getattr(server, "interface", None), "token", None)
            if token:
                return token, "WebInterface(token=...)"
        if settings.EDGEFLOW_GATEWAY_TOKEN:
            return settings.EDGEFLOW_GATEWAY_TOKEN, "EDGEFLOW_GATEWAY_TOKEN"
        return self.registry.share_token(), "auto"

    def _start_tcp_server(self) -> None:
        from edgeflow.transport.tcp import TcpServer
        host, port = tcp_bind_host(self.broker), settings.GATEWAY_TCP_PORT
        token, self.tcp_token_source = self._ingest_token()
        require_token(f"gateway {self.node.name!r}: TCP ingest", host, port, token)
        self.tcp_server = TcpServer(host=host, port=port, token=token)
        self.tcp_server.start()
        self.gateway_tcp = f"{advertised_address(self.broker)}:{self.tcp_server.port}"
        reach = "this host only" if is_loopback(host) else "reachable from other hosts"
        where = ("automatic, shared through the control Redis" if self.tcp_token_source == "auto"
                 else f"from {self.tcp_token_source}")
        log.info("gateway %s: TCP ingest listening on %s:%d (%s; token required, %s); advertised as %s",
                 self.node.name, host, self.tcp_server.port, reach, where, self.gateway_tcp)

    def add_tcp_inputs(self) -> None:
        """A gateway reads each input topic also from its TCP server (frames from producers on other hosts);
        added once the TCP ingest runs (the gateway's first refresh)."""
        self._tcp_inputs_wanted = True
        if self.tcp_server is not None:
            self._add_tcp_inputs()

    def _add_tcp_inputs(self) -> None:
        for plan in self.runner.job.plan.inputs:
            for topic in plan.topics:
                self.runner.inputs.add(Input(plan.label, plan.source, self.tcp_server.subscriber(topic)))

    def tcp_ingest(self) -> dict | None:
        """The TCP ingest's figures for the node's statistics (the gateway's /metrics and /api/status)."""
        if self.tcp_server is None:
            return None
        stats = self.tcp_server.statistics()
        return {"address": f"{stats.host}:{stats.port}", "advertised": self.gateway_tcp,
                "token": self.tcp_token_source, "connections": stats.connections, "accepted": stats.accepted,
                "authenticated": stats.authenticated, "frames": stats.frames, "rejected": dict(stats.rejected)}

    # -- routing ---------------------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Re-decide routes (at most every ROUTE_PERIOD seconds unless forced)."""
        if self._gateway_pending:
            self._open_gateway()
            force = True
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + ROUTE_PERIOD
        if self.tcp_server is not None:
            self.runner.metrics.extra["tcp_ingest"] = self.tcp_ingest()
        peers = self.registry.peers()
        if peers is None:          # the registry is unreachable: keep every route as it is until it answers
            return
        if self.runner.inputs is not None:
            self._route_inputs(peers)
        if self.runner.output is not None:
            self._route_outputs(peers)
        self.runner.metrics.extra["routes"] = self.describe()      # routes are part of the node's statistics

    def _note(self, source: str, target: str, route: placement.Route, qos: QoS) -> None:
        key = (source, target)
        if route.transport == "pending" and key in self.routes:
            return                 # briefly unregistered (a restart): the last known route stands
        if self.routes.get(key) != route:
            self.routes[key] = route
            self.registry.entry["routes"] = self.describe()     # published with the next heartbeat
            if route.transport != "pending":
                print(route.describe(source, target, qos.name), flush=True)

    def _route_inputs(self, peers: dict) -> None:
        for plan in self.runner.job.plan.inputs:
            src = self.graph.node(plan.source)
            for r, topic in enumerate(plan.topics):
                entry = peers.get((src.name, r))
                route = placement.choose_route(host_of(entry), self.me, target_kind=self.node.kind,
                                               broker_kind=self.broker_kind, gateway_tcp=self.gateway_tcp)
                if route.transport == "shm" and shm.writer_status(topic, app=self.graph.app) != "running":
                    # same identity, yet the ring is not visible here (e.g. a private /dev/shm): the network
                    route = placement.Route(self.broker_kind, "same host identity, but its ring cannot be attached")
                self._note(src.name, self.node.name, route, plan.qos)
                if route.transport in ("redis", "dual-redis") and topic not in self.redis_inputs:
                    self._subscribe_redis(plan, topic)

    def _subscribe_redis(self, plan, topic: str) -> None:
        from edgeflow.transport.redis import RedisSubscriber
        sub = RedisSubscriber(topic, app=self.graph.app, broker=self.broker, qos=plan.qos, group=plan.group,
                              consumer=f"{self.node.name}-{self.runner.job.replica}-{os.getpid()}")
        self.redis_inputs[topic] = sub
        self.runner.inputs.add(Input(plan.label, plan.source, sub))

    def _route_outputs(self, peers: dict) -> None:
        redis_groups, gateways, unknown = [], {}, False
        for edge in self.graph.outputs_of(self.node.name):
            target = self.graph.node(edge.target)
            for r in range(target.replicas):
                entry = peers.get((target.name, r))
                route = placement.choose_route(self.me, host_of(entry), target_kind=target.kind,
                                               broker_kind=self.broker_kind,
                                               gateway_tcp=entry and entry.get("gateway_tcp"))
                if route.transport == "shm" and self._reads_over_network(entry, target.name):
                    route = placement.Route(self.broker_kind, "the consumer cannot attach this ring")
                self._note(self.node.name, target.name, route, edge.qos)
                unknown |= route.transport == "pending"
                if route.transport in ("redis", "dual-redis"):
                    redis_groups.append((group_name(target.name), edge.qos))
                elif route.transport == "tcp":
                    gateways[entry["gateway_tcp"]] = entry
        now = time.monotonic()
        if redis_groups:
            self._redis_seen = now
        # A consumer missing from the registry (restarting, or Redis itself restarted empty) is not gone:
        # remote routes are kept for REMOTE_GRACE seconds, so frames held for it are never dropped.
        keep = unknown or now - self._redis_seen < REMOTE_GRACE
        self._ensure_redis(redis_groups, keep=keep)
        if gateways:
            self._tcp_seen = now
        if gateways or not (unknown or now - self._tcp_seen < REMOTE_GRACE):
            self._ensure_tcp(gateways)

    def _reads_over_network(self, entry: dict | None, target: str) -> bool:
        """The consumer said (in its registry entry) that it reads this edge over Redis."""
        return any(r["source"] == self.node.name and r["target"] == target
                   and r["transport"] in ("redis", "dual-redis") for r in (entry or {}).get("routes") or ())

    def _ensure_redis(self, groups: list, keep: bool = False) -> None:
        if not groups and keep:
            return
        if groups and self.redis_pub is None:
            from edgeflow.transport.redis import RedisPublisher
            durable = tuple(sorted({g for g, qos in groups if qos is QoS.DURABLE}))
            topic = output_topic(self.node.name, self.node.replicas, self.runner.job.replica)
            self.redis_pub = RedisPublisher(topic, app=self.graph.app, broker=self.broker, durable_groups=durable)
            self.runner.output.remotes.append(self.redis_pub)
        elif not groups and self.redis_pub is not None:    # no remote consumer left: stop paying for Redis
            held = self.redis_pub.statistics()
            if held.spooled or held.retained or self.registry.connected is False:
                # DURABLE frames not yet acknowledged (or the registry cannot tell: a full or absent Redis
                # refuses its heartbeats too): the consumer is away, not gone; closing would lose them
                return
            self.runner.output.remotes.remove(self.redis_pub)
            self.redis_pub.close()
            self.redis_pub = None

    def _ensure_tcp(self, gateways: dict) -> None:
        """One TcpSender per gateway address (``gateways``: address -> its registry entry), with the token
        that gateway takes; a sender whose gateway's shared token changed is replaced."""
        from edgeflow.transport.tcp import TcpSender
        topic = output_topic(self.node.name, self.node.replicas, self.runner.job.replica)
        for address, entry in gateways.items():
            token = self._sender_token(address, entry)
            if token is _NOT_YET:
                continue                     # its shared token is not readable yet: next refresh
            if address in self.tcp_senders:
                if self._sender_tokens.get(address) == token:
                    continue
                self._drop_sender(address)   # the gateway came back with another token
            host, _, port = address.rpartition(":")
            sender = TcpSender(topic, host, int(port), app=self.graph.app, token=token)
            self.tcp_senders[address] = sender
            self._sender_tokens[address] = token
            self.runner.output.remotes.append(sender)
        for address in set(self.tcp_senders) - set(gateways):
            self._drop_sender(address)

    def _drop_sender(self, address: str) -> None:
        sender = self.tcp_senders.pop(address)
        self._sender_tokens.pop(address, None)
        self.runner.output.remotes.remove(sender)
        sender.close()

    def _sender_token(self, address: str, entry: dict | None):
        """The token for the gateway at ``address``: its shared one (from the control Redis) when it shares
        it, else $EDGEFLOW_GATEWAY_TOKEN; _NOT_YET when the shared one cannot be read right now."""
        if (entry or {}).get("gateway_auth") == "shared":
            token = self.registry.shared_token()
            return _NOT_YET if token is None else token
        token = settings.EDGEFLOW_GATEWAY_TOKEN
        if token is None and (entry or {}).get("gateway_auth") == "configured" and address not in self._warned:
            self._warned.add(address)
            log.warning("%s: the gateway at %s requires its configured token; set EDGEFLOW_GATEWAY_TOKEN on "
                        "this host too", self.node.name, address)
        return token

    def app_statistics(self, own: dict) -> dict:
        """The app-wide statistics of a distributed run, as the supervisor makes them in an all-in-one run:
        every node's replicas from their snapshots in the registry (read at most every STATS_CACHE_S; the
        last known ones while Redis does not answer), this replica's ``own`` fresh one in place of its own."""
        from edgeflow.runtime import metrics
        now = time.monotonic()
        if now - self._peer_stats_at >= STATS_CACHE_S:
            self._peer_stats_at = now
            got = self.registry.peer_stats()
            if got is not None:
                self._peer_stats = got
                self._transports = {key: r["transport"] for key, r in self.all_routes().items()}
        snaps = dict(self._peer_stats)
        snaps[(self.runner.name, self.runner.job.replica)] = own
        by_node: dict[str, list] = {}
        for (name, _), snap in sorted(snaps.items()):
            by_node.setdefault(name, []).append(snap)
        per_node = {name: {"states": [s.get("state") or "running" for s in group]}
                    for name, group in by_node.items()}
        return metrics.app_statistics(self.graph, by_node, per_node, self._transports)

    def all_routes(self) -> dict[tuple[str, str], dict]:
        """Routes of every edge any registered node reported (the gateway's /api/graph in a distributed run)."""
        out = {}
        for entry in (self.registry.peers() or {}).values():
            for route in entry.get("routes") or ():
                out[(route["source"], route["target"])] = route
        out.update({(r["source"], r["target"]): r for r in self.describe()})
        return out

    def describe(self) -> list[dict]:
        """Each edge of this node with its route, for statistics."""
        # a copy first: the gateway's web thread asks for this while the node loop may add a route
        return [{"source": s, "target": t, "transport": r.transport, "reason": r.reason}
                for (s, t), r in list(self.routes.items())]


_NOT_YET = object()          # _sender_token: the gateway's shared token is not readable yet


def _version() -> str:
    from edgeflow import __version__
    return __version__
