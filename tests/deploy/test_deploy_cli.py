"""Issue 8: `edgeflow deploy` and `edgeflow clean` as commands: dry runs, docker and kubectl (fakes that
record their arguments), errors and exit codes, what the output folder keeps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from _deploytools import EXAMPLES, ROOT, by_kind, check_references, deploy, generate, validate
from edgeflow import __version__
from edgeflow.cli import _load, cli
from edgeflow.deploy import dockerfile, manifests, render

MINIMAL = '''
import numpy as np
from edgeflow import ConsumerNode, EdgeApp, ProducerNode

app = EdgeApp("minimal")


@app.node(name="cam", fps=10)
class Cam(ProducerNode):
    def produce(self):
        return np.zeros((8, 8), np.uint8)


@app.node(name="proc")
class Proc(ConsumerNode):
    def process(self, data):
        return data


if __name__ == "__main__":
    app.link("cam").to("proc")
    app.run()
'''
SELECTOR = "app.kubernetes.io/managed-by=edgeflow,app.kubernetes.io/instance=minimal"


@pytest.fixture
def project(tmp_path) -> Path:
    """A folder holding only main.py."""
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "main.py").write_text(MINIMAL)
    return folder


@pytest.fixture
def fake_tools(tmp_path) -> tuple[Path, Path]:
    """A bin folder with `kubectl` and `docker` scripts that append their arguments (and stdin for docker
    build) to a log; FAIL_<TOOL>=1 makes one fail like the real one would."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("kubectl", "docker"):
        script = bin_dir / tool
        script.write_text(f'''#!/bin/sh
echo "{tool} $*" >> {log}
if [ "$1" = "build" ]; then cat >> {log}; fi
if [ -n "$FAIL_{tool.upper()}" ]; then echo "error: the server is unreachable" >&2; exit 1; fi
exit 0
''')
        script.chmod(0o755)
    return bin_dir, log


def run(*args: str, cwd: Path, path: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": path, **env}
    out = subprocess.run([sys.executable, "-m", "edgeflow.cli", *args], cwd=cwd, env=full,
                         capture_output=True, text=True, timeout=60)
    print(out.stdout, out.stderr)
    return out


def test_dry_run_no_build_in_a_folder_with_only_main_py_and_no_tools(project):
    out = run("deploy", "main.py", "--registry", "docker.io/me", "--namespace", "demo", "--dry-run",
              "--no-build", cwd=project, path="/nonexistent")
    assert out.returncode == 0, out.stderr
    assert "$ kubectl apply -f k8s" in out.stderr and "dry run: nothing was built" in out.stderr
    objects = render.load(project / "k8s")
    validate(objects)
    check_references(objects, _load.load_app(project / "main.py").graph(), namespace="demo")
    assert sorted(p.name for p in project.iterdir()) == ["k8s", "main.py"]       # nothing else written
    image = by_kind(objects, "Deployment")[-1]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"docker.io/me/minimal:{dockerfile.content_tag(project, __version__, [project / 'k8s'])}"


def test_dry_run_prints_the_docker_build_with_the_generated_dockerfile(project):
    out = run("deploy", "main.py", "--registry", "docker.io/me", "-n", "demo", "--dry-run", "--tag", "v1",
              cwd=project, path="/nonexistent")
    assert out.returncode == 0, out.stderr
    assert f"$ docker build -t docker.io/me/minimal:v1 -f - {project}" in out.stderr
    assert f'ARG EDGEFLOW_SPEC="edgeflow=={__version__}"' in out.stderr and "USER 10001:10001" in out.stderr
    assert "$ docker push docker.io/me/minimal:v1" in out.stderr


def test_a_real_deploy_builds_pushes_and_applies(project, fake_tools):
    bin_dir, log = fake_tools
    (project / "requirements.txt").write_text("numpy\n")
    out = run("deploy", "main.py", "--registry", "registry.local:5000/team", "-n", "demo", "--tag", "t1",
              "--kube-context", "edge", "--output", "out", cwd=project, path=f"{bin_dir}:/usr/bin:/bin")
    assert out.returncode == 0, out.stderr
    calls = log.read_text()
    assert f"docker build -t registry.local:5000/team/minimal:t1 -f - {project}" in calls
    assert "RUN pip install --no-cache-dir -r /tmp/requirements.txt" in calls     # the Dockerfile, on stdin
    assert "docker push registry.local:5000/team/minimal:t1" in calls
    assert calls.strip().splitlines()[-1] == "kubectl --context edge apply -f out"
    assert f"deployed: kubectl get pods -n demo -l {SELECTOR}" in out.stdout


def test_an_own_dockerfile_is_used(project, fake_tools):
    bin_dir, log = fake_tools
    (project / "Dockerfile").write_text("FROM scratch\n")
    out = run("deploy", "main.py", "--registry", "r.io/x", "-n", "demo", "--tag", "t", cwd=project,
              path=f"{bin_dir}:/usr/bin:/bin")
    assert out.returncode == 0
    assert f"docker build -t r.io/x/minimal:t {project}\n" in log.read_text()


def test_missing_kubectl_exits_2_and_a_failing_one_exits_1(project, fake_tools):
    out = run("deploy", "main.py", "--registry", "r.io/x", "-n", "demo", "--no-build", cwd=project,
              path="/nonexistent")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("ConfigError: kubectl is not installed")
    assert (project / "k8s" / "00-namespace.yaml").exists()          # the manifests are written first
    bin_dir, _ = fake_tools
    out = run("deploy", "main.py", "--registry", "r.io/x", "-n", "demo", "--no-build", cwd=project,
              path=f"{bin_dir}:/usr/bin:/bin", FAIL_KUBECTL="1")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == ("EdgeFlowError: kubectl apply failed (exit 1): error: the "
                                                   "server is unreachable")


def test_clean_removes_by_label_only(project, fake_tools):
    for args in (["clean", "main.py", "-n", "demo", "--dry-run"],
                 ["deploy", "main.py", "-n", "demo", "--clean", "--dry-run"]):
        out = run(*args, cwd=project, path="/nonexistent")
        assert out.returncode == 0, out.stderr
        assert out.stderr.strip() == (f"$ kubectl delete deployments,statefulsets,services,configmaps,"
                                      f"secrets -n demo -l {SELECTOR} --ignore-not-found")
        assert "the namespace itself is left" in out.stdout
    bin_dir, log = fake_tools
    out = run("clean", "main.py", "-n", "demo", "--kube-context", "edge", cwd=project,
              path=f"{bin_dir}:/usr/bin:/bin")
    assert out.returncode == 0
    assert log.read_text().strip() == (f"kubectl --context edge delete deployments,statefulsets,services,"
                                       f"configmaps,secrets -n demo -l {SELECTOR} --ignore-not-found")
    assert not (project / "k8s").exists()


def test_every_object_deploy_makes_carries_the_clean_selector(tmp_path):
    objects = generate(EXAMPLES / "quickstart", tmp_path / "k8s")
    selector = dict(part.split("=") for part in manifests.selector("test-distributed-system").split(","))
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert selector.items() <= obj["metadata"]["labels"].items(), obj["metadata"]["name"]
    namespace = by_kind(objects, "Namespace")[0]
    assert not selector.items() <= namespace["metadata"]["labels"].items()   # never deleted by clean


def test_usage_errors_exit_2(project):
    result = CliRunner().invoke(cli, ["deploy", str(project / "main.py"), "-n", "demo", "--dry-run"])
    assert result.exit_code == 2 and "--registry" in result.stderr
    result = CliRunner().invoke(cli, ["deploy", str(project / "main.py"), "--registry", "r.io/x"])
    assert result.exit_code == 2 and "--namespace" in result.stderr
    result = CliRunner().invoke(cli, ["deploy", str(project / "nope.py"), "--registry", "r.io/x", "-n", "d"])
    assert result.exit_code == 2 and result.stderr.strip().endswith("nope.py: no such file")
    result = CliRunner().invoke(cli, ["deploy", str(project / "main.py"), "--registry", "Docker.io/Me",
                                      "-n", "d", "--dry-run"])
    assert result.exit_code == 2 and "lowercase registry" in result.stderr


def test_a_redeploy_keeps_the_password_and_other_files_and_drops_stale_ones(project, tmp_path):
    output = tmp_path / "k8s"
    output.mkdir()
    (output / "README.md").write_text("mine")
    (output / "extra.yaml").write_text("kind: ConfigMap\n")              # not generated: kept
    first = generate(project / "main.py", output)
    password = by_kind(first, "Secret")[0]["stringData"]["password"]
    assert (output / "20-minimal-proc.yaml").exists()
    (project / "main.py").write_text(MINIMAL.replace('"proc"', '"proc2"'))     # a node renamed
    result = deploy(project / "main.py", output)
    assert result.exit_code == 0
    assert "removed" in result.output and not (output / "20-minimal-proc.yaml").exists()
    assert (output / "20-minimal-proc2.yaml").exists()
    assert (output / "README.md").read_text() == "mine" and (output / "extra.yaml").exists()
    second = render.load(output)
    assert by_kind(second, "Secret")[0]["stringData"]["password"] == password


def test_the_image_tag_follows_the_project_content(project, tmp_path):
    tag = dockerfile.content_tag(project, "0.2.0")
    assert tag.startswith("sha-") and len(tag) == 16 and tag == dockerfile.content_tag(project, "0.2.0")
    assert dockerfile.content_tag(project, "0.3.0") != tag
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (project / "k8s").mkdir()
    (project / "k8s" / "a.yaml").write_text("x")
    assert dockerfile.content_tag(project, "0.2.0", [project / "k8s"]) == tag
    (project / "main.py").write_text(MINIMAL + "\n# changed\n")
    assert dockerfile.content_tag(project, "0.2.0") != tag


def test_the_generated_dockerfile():
    text = dockerfile.dockerfile("9.9.9", requirements=False, python="3.12")
    assert text.startswith("# Generated by edgeflow deploy 9.9.9") and "FROM python:3.12-slim" in text
    assert 'ARG EDGEFLOW_SPEC="edgeflow==9.9.9"' in text and "requirements" not in text
    assert 'ENTRYPOINT ["edgeflow"]' in text and "USER 10001:10001" in text


def test_the_manifests_parse_as_plain_yaml(project):
    generate(project / "main.py", project / "k8s")
    for path in sorted((project / "k8s").iterdir()):
        assert all(isinstance(doc, dict) for doc in yaml.safe_load_all(path.read_text()))
