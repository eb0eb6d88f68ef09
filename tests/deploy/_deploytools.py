"""Helpers of the deploy tests: generate manifests through the CLI, validate them, check cross-references."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
from click.testing import CliRunner

from edgeflow.cli import cli
from edgeflow.deploy import render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?")


def k8s_version() -> str:
    """1.32 (a current release) when kubernetes-validate ships it, else the closest it has."""
    versions = kubernetes_validate.utils.all_versions()
    wanted = [v for v in versions if v.startswith("1.32")]
    return wanted[0] if wanted else kubernetes_validate.utils.latest_version()


def deploy(file: Path | str, output: Path, *extra: str, namespace: str = "edgeflow") -> Any:
    """`edgeflow deploy FILE --registry R --namespace NS --dry-run --no-build --output OUTPUT` (CliRunner)."""
    result = CliRunner().invoke(cli, ["deploy", str(file), "--registry", "registry.local:5000/team",
                                      "--namespace", namespace, "--dry-run", "--no-build", "--output",
                                      str(output), *extra])
    print(result.output, result.stderr)
    return result


def generate(file: Path | str, output: Path, **kw: Any) -> list[dict[str, Any]]:
    result = deploy(file, output, **kw)
    assert result.exit_code == 0, result.output + result.stderr
    return render.load(output)


def validate(objects: list[dict[str, Any]]) -> None:
    """Every object against the OpenAPI schemas of the release, strictly (unknown fields fail)."""
    version = k8s_version()
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


def check_references(objects: list[dict[str, Any]], graph: Any, namespace: str = "edgeflow",
                     file: str = "main.py") -> None:
    """The cross-references a cluster would resolve: selectors, ports, refs, volumes, names, labels, nodes."""
    _check_names_and_labels(objects, graph, namespace)
    deployments = by_kind(objects, "Deployment")
    for d in deployments:
        pod = d["spec"]["template"]
        assert d["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        volumes = {v["name"] for v in pod["spec"].get("volumes", [])}
        for c in pod["spec"]["containers"]:
            assert {m["name"] for m in c.get("volumeMounts", [])} <= volumes, c["name"]
            _check_env_refs(c, objects)
            for probe in (c.get("livenessProbe"), c.get("readinessProbe")):
                probe = probe or {}
                port = probe.get("httpGet", {}).get("port") or probe.get("tcpSocket", {}).get("port")
                if isinstance(port, str):
                    assert port in {p["name"] for p in c.get("ports", [])}, (c["name"], port)
    for svc in by_kind(objects, "Service"):
        picked = [d for d in deployments
                  if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(picked) == 1, svc["metadata"]["name"]
        ports = [p for c in containers(picked[0]) for p in c.get("ports", [])]
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert any(target in (p.get("name"), p["containerPort"]) for p in ports), \
                (svc["metadata"]["name"], target)
    _check_nodes_run(deployments, graph, file)


def _check_names_and_labels(objects: list[dict[str, Any]], graph: Any, namespace: str) -> None:
    seen = set()
    instance = None
    for obj in objects:
        meta = obj["metadata"]
        assert DNS_LABEL.fullmatch(meta["name"]), meta["name"]
        assert (obj["kind"], meta["name"]) not in seen
        seen.add((obj["kind"], meta["name"]))
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "edgeflow"
        for value in meta["labels"].values():
            assert LABEL_VALUE.fullmatch(value), value
        if obj["kind"] == "Namespace":
            assert meta["name"] == namespace and "app.kubernetes.io/instance" not in meta["labels"]
            continue
        assert meta["namespace"] == namespace
        for key in ("name", "instance", "component", "part-of"):
            assert f"app.kubernetes.io/{key}" in meta["labels"], (meta["name"], key)
        instance = instance or meta["labels"]["app.kubernetes.io/instance"]
        assert meta["labels"]["app.kubernetes.io/instance"] == instance
    assert ("Namespace", namespace) in seen


def _check_env_refs(container: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    secrets = {s["metadata"]["name"]: {**s.get("data", {}), **s.get("stringData", {})}
               for s in by_kind(objects, "Secret")}
    maps = {m["metadata"]["name"]: m.get("data", {}) for m in by_kind(objects, "ConfigMap")}
    defined = set()
    for env in container.get("env", []):
        source = env.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            assert ref["key"] in secrets[ref["name"]], ref
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            assert ref["key"] in maps[ref["name"]], ref
        for var in re.findall(r"\$\((\w+)\)", env.get("value", "")):
            assert var in defined, (env["name"], var)          # $(VAR) only sees variables defined before
        defined.add(env["name"])
    for var in re.findall(r"\$\((\w+)\)", " ".join(container.get("args", []))):
        assert var in defined, var


def _check_nodes_run(deployments: list[dict[str, Any]], graph: Any, file: str) -> None:
    running: dict[str, list[tuple[dict, dict]]] = {}
    for d in deployments:
        for c in containers(d):
            args = c.get("args", [])
            if c.get("command") == ["edgeflow"]:
                assert args[:2] == ["run", file], args
                node = args[args.index("--node") + 1]
                running.setdefault(node, []).append((d, c))
    assert sorted(running) == sorted(spec.name for spec in graph.nodes)
    for spec in graph.nodes:
        (d, c), *more = running[spec.name]
        pod = d["spec"]["template"]["spec"]
        if spec.group is None:
            assert not more and d["spec"]["replicas"] == spec.replicas
            assert d["spec"]["template"]["metadata"]["labels"]["edgeflow.io/node"]
        else:
            assert pod.get("shareProcessNamespace") is True and d["spec"]["replicas"] == 1
            assert len(running[spec.name]) == spec.replicas
        if spec.device is None:
            assert "nodeSelector" not in pod or spec.group is not None
        else:
            assert pod["nodeSelector"] == {"edgeflow.io/device": spec.device}
        shm = next(v for v in pod["volumes"] if v["name"] == "shm")
        assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"].endswith("Mi")
        env = {e["name"]: e for e in c["env"]}
        assert env["NODE_NAME"]["value"] == spec.name
        assert "secretKeyRef" in env["REDIS_PASSWORD"]["valueFrom"]
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert c.get("livenessProbe") and c.get("readinessProbe")
