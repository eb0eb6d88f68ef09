"""Issue 8: the repository's k8s/ holds what `edgeflow deploy` makes for the quickstart, valid for 1.32."""

from __future__ import annotations

from _deploytools import EXAMPLES, ROOT, by_kind, check_references, generate, validate
from edgeflow.cli import _load
from edgeflow.deploy import render

K8S = ROOT / "k8s"
REGENERATE = ("edgeflow deploy examples/quickstart/main.py --registry docker.io/edgeflow "
              "--namespace edgeflow --dry-run --no-build --output k8s/")


def test_k8s_is_valid_and_consistent():
    objects = render.load(K8S)
    assert objects, f"k8s/ holds no generated manifests: run {REGENERATE}"
    validate(objects)
    check_references(objects, _load.load_app(EXAMPLES / "quickstart" / "main.py").graph())


def test_k8s_is_what_deploy_generates_now(tmp_path):
    """Fails when the quickstart or edgeflow/deploy changed without regenerating k8s/ (see k8s/README.md)."""
    committed = render.load(K8S)
    fresh_dir = tmp_path / "k8s"
    fresh_dir.mkdir()
    for path in render.generated_files(K8S):           # start from the committed Secret: same password
        (fresh_dir / path.name).write_text(path.read_text())
    from click.testing import CliRunner
    from edgeflow.cli import cli
    result = CliRunner().invoke(cli, ["deploy", "examples/quickstart/main.py", "--registry",
                                      "docker.io/edgeflow", "--namespace", "edgeflow", "--dry-run",
                                      "--no-build", "--output", str(fresh_dir)], catch_exceptions=False)
    assert result.exit_code == 0
    fresh = render.load(fresh_dir)
    assert fresh == committed, f"k8s/ is out of date: run {REGENERATE}"
    assert sorted(p.name for p in render.generated_files(K8S)) == sorted(p.name for p in fresh_dir.iterdir())
    assert (K8S / "README.md").exists() and "edgeflow deploy examples/quickstart/main.py" in (
        K8S / "README.md").read_text()
    assert by_kind(committed, "Secret")
