"""``edgeflow deploy FILE`` and ``edgeflow clean FILE``: the app on Kubernetes, and off it again.

    edgeflow deploy main.py --registry docker.io/me --namespace demo     build, push, write k8s/, apply
    edgeflow deploy main.py --dry-run              manifests and Dockerfiles into a new temporary folder (printed)
    edgeflow deploy main.py --dry-run --no-build --out k8s/     regenerate a manifests folder on purpose
    edgeflow clean main.py --namespace demo        (or: edgeflow deploy main.py --namespace demo --clean)
    edgeflow deploy pipeline.yaml -c site.yaml --dry-run    a pipeline file (merged with -c files) likewise

Defaults as in the original EdgeFlow: ``--registry localhost:5000``, ``--namespace edgeflow``.

Steps of a deploy: load FILE (as ``python FILE``) and validate its graph; write the manifests into --out
(see edgeflow.deploy.manifests for what they hold); build and push the images with docker (unless
--no-build): the project's image, and one per distinct node.toml ``[build]`` table (base image and
dependencies), each from a build context holding the project and EdgeFlow's own source (see
edgeflow.deploy.dockerfile); ``kubectl apply -f OUT`` (unless --dry-run, which prints each command instead
of running it).

A pipeline file's project is its folder; the ``-c`` files must be inside it too (the image holds only the
project), and each node's container runs ``edgeflow run pipeline.yaml -c site.yaml --node NAME``. Its
``${VAR}`` references are checked against this environment now and read from the Pod's when it runs.

A dry run never writes into the project or the current folder unless ``--out`` says so: without it, it writes
into a new temporary folder and prints its path (with the build contexts under ``<out>/docker/``).
"""

from __future__ import annotations

import re
import secrets
import tempfile
from pathlib import Path

import click

from edgeflow.errors import ConfigError

_REGISTRY = re.compile(r"[a-z0-9]([a-z0-9._:-]*[a-z0-9])?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*")


def image_ref(registry: str, app: str, tag: str) -> str:
    """``<registry>/<app as a DNS name>:<tag>``.

    Raises:
        ConfigError: the registry is not a lowercase ``host[:port][/path]``, or the tag is malformed.
    """
    from edgeflow.deploy.manifests import dns_name

    registry = registry.rstrip("/")
    if not _REGISTRY.fullmatch(registry):
        raise ConfigError(f"--registry {registry!r}: expected a lowercase registry and path such as "
                          "docker.io/yourname or registry.local:5000/team (no scheme, no tag)")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise ConfigError(f"--tag {tag!r}: letters, digits, '_', '.' and '-', at most 128")
    return f"{registry}/{dns_name(app)}:{tag}"


def _project(file: str | None, configs: tuple[str, ...] = ()) -> tuple[Path, str, list[str]]:
    """(project folder, the pipeline file's path inside it, the ``-c`` files' paths inside it).

    Raises:
        ConfigError: a ``-c`` file outside the project folder.
    """
    from edgeflow.cli import _load

    files = _load.pipeline_files(file, configs) or [str(_load.resolve(file))]
    path = Path(files[0]).resolve()
    inside = []
    for config in files[1:]:
        other = Path(config).resolve()
        if not other.is_relative_to(path.parent):
            raise ConfigError(f"-c {config}: outside the project folder {path.parent} (the image holds only "
                              "the project's files)")
        inside.append(other.relative_to(path.parent).as_posix())
    return path.parent, path.name, inside


def _with_configs(objects: list[dict], file: str, configs: list[str]) -> None:
    """Make every node container's ``edgeflow run FILE`` merge the ``-c`` files too."""
    extra = [arg for config in configs for arg in ("-c", config)]
    for obj in objects:
        for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            args = container.get("args", [])
            if container.get("command") == ["edgeflow"] and args[:2] == ["run", file]:
                container["args"] = [*args[:2], *extra, *args[2:]]


def _summary(objects: list[dict]) -> str:
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    return ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in counts.items())


def do_clean(file: str | None, namespace: str, context: str | None, dry_run: bool,
             configs: tuple[str, ...] = ()) -> None:
    """Delete what deploy created for FILE's app in ``namespace`` (by label; the Namespace stays)."""
    from edgeflow.cli import _load
    from edgeflow.deploy import kubectl, manifests

    with _load.reported():
        app = _load.load_any(file, configs)
    kubectl.delete(namespace, manifests.selector(app.name), context=context, dry_run=dry_run)
    click.echo(f"{'would remove' if dry_run else 'removed'} the objects of app {app.name!r} in namespace "
               f"{namespace!r} (selector {manifests.selector(app.name)}); the namespace itself is left")


DEFAULT_REGISTRY = "localhost:5000"      # the original EdgeFlow's defaults
DEFAULT_NAMESPACE = "edgeflow"
DEFAULT_OUT = Path("k8s")                # a real deploy's manifests, relative to the current folder


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", required=False, type=click.Path(dir_okay=True, path_type=str))
@click.option("-c", "--config", "configs", multiple=True, metavar="FILE",
              help="A pipeline file (YAML or JSON) merged over FILE's; repeat it: later files win.")
@click.option("--registry", default=DEFAULT_REGISTRY, show_default=True, metavar="R",
              help="Where the images go, e.g. docker.io/yourname.")
@click.option("--namespace", "-n", default=DEFAULT_NAMESPACE, show_default=True, metavar="N",
              help="Kubernetes namespace (created).")
@click.option("--out", "--output", "-o", "output", default=None, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Where the manifests are written (default: k8s/, or a new temporary folder with --dry-run).")
@click.option("--dry-run", is_flag=True, help="Write manifests and Dockerfiles only; print the docker and "
              "kubectl commands instead of running them.")
@click.option("--no-build", is_flag=True, help="Use existing images: no docker build or push.")
@click.option("--kube-context", metavar="C", help="kubectl context (default: the current one).")
@click.option("--tag", metavar="T", help="Image tag (default: sha-<hash of the project's files>).")
@click.option("--clean", is_flag=True, help="Remove what an earlier deploy of this app created instead.")
@click.option("--monitoring", is_flag=True, help="Also write the project's prometheus.yml and grafana*.json "
              "dashboards into ConfigMaps, aimed at the gateway's Service and token Secret.")
def deploy(file: str | None, configs: tuple[str, ...], registry: str, namespace: str, output: Path | None,
           dry_run: bool, no_build: bool, kube_context: str | None, tag: str | None, clean: bool,
           monitoring: bool) -> None:
    """Deploy FILE's app to Kubernetes: images, manifests in --out, kubectl apply.

    One image for the project, plus one per distinct node.toml [build] table (base image and dependencies);
    per node a Deployment running `edgeflow run FILE --node NAME` (nodes of one shared-memory group share a
    Pod; [runtime] gpu = true asks for an nvidia.com/gpu); the control Redis (and the data Redis for a
    DualRedisBroker) with a generated password in a Secret; the gateway's NodePort Service.
    """
    if clean:
        do_clean(file, namespace, kube_context, dry_run, configs)
        return
    from edgeflow import __version__
    from edgeflow.cli import _load
    from edgeflow.deploy import dockerfile, kubectl, manifests, render

    with _load.reported():
        graph = _load.load_any(file, configs).graph()
    project, inside, overlays = _project(file, configs)
    if output is None:
        # a dry run must not rewrite anything tracked (a project's k8s/): it gets a folder of its own
        output = Path(tempfile.mkdtemp(prefix="edgeflow-deploy-")) if dry_run else DEFAULT_OUT
    tag = tag or dockerfile.content_tag(project, __version__, exclude=[output])
    image = image_ref(registry, graph.app, tag)
    plans = dockerfile.image_plans(graph, registry.rstrip("/"), tag)
    images = {name: plan.image for plan in plans if not plan.default for name in plan.nodes}
    # a redeploy keeps the password: a new one would restart both Redis and break every client
    password = render.existing_password(output, manifests.secret_name(graph.app)) or secrets.token_hex(24)
    cfg = manifests.DeployConfig(image=image, namespace=namespace, password=password, file=inside,
                                 images=images)
    objects = manifests.build(graph, cfg)
    if monitoring:
        from edgeflow.deploy import monitoring as monitoring_files
        objects += monitoring_files.build(graph, cfg, project)
    _with_configs(objects, inside, overlays)
    written, stale = render.write(objects, output, source=" ".join([*([file] if file else []),
                                                                      *(f"-c {c}" for c in configs)]))
    click.echo(f"app {graph.app}: {_summary(objects)} in {render.relative(output)}/")
    for path in written:
        click.echo(f"  wrote {render.relative(path)}")
    for path in stale:
        click.echo(f"  removed {render.relative(path)} (no longer part of the app)")
    if graph.broker is None:
        click.echo("note: the app has no broker; the cluster gets a Redis anyway, since each node has its "
                   "own Pod", err=True)
    if no_build:
        for plan in plans:
            click.echo(f"image: {plan.image} (--no-build: it must exist already)", err=True)
    else:
        _build(project, plans, output, dry_run=dry_run, exclude=[output])
    kubectl.apply(output, context=kube_context, dry_run=dry_run)
    if dry_run:
        click.echo(f"dry run: nothing was built, pushed or applied; the files are in {output}", err=True)
    else:
        click.echo(f"deployed: kubectl get pods -n {namespace} -l {manifests.selector(graph.app)}")


def _build(project: Path, plans: list, output: Path, *, dry_run: bool, exclude: list[Path]) -> None:
    """Build and push every image. A generated Dockerfile builds from a staged context (the project and
    EdgeFlow's source): under ``<out>/docker/<image>/`` in a dry run, so it can be inspected and built by
    hand, else in a temporary folder removed afterwards. A project's own Dockerfile builds its default image
    from the project folder itself."""
    from edgeflow import __version__
    from edgeflow.deploy import dockerfile, kubectl

    requirements = (project / "requirements.txt").is_file()
    for plan in plans:
        if plan.default and (project / "Dockerfile").is_file():
            kubectl.build_image(plan.image, project, None, dry_run=dry_run)
            kubectl.push_image(plan.image, dry_run=dry_run)
            continue
        text = dockerfile.dockerfile(__version__, requirements=requirements, base=plan.base,
                                     dependencies=plan.dependencies, nodes=() if plan.default else plan.nodes)
        slug = plan.image.rsplit("/", 1)[-1].split(":")[0]
        if dry_run:
            context = output / "docker" / slug
            if context.exists():
                import shutil
                shutil.rmtree(context)          # ours from an earlier dry run into the same --out
            dockerfile.stage_context(project, context, text, exclude)
            kubectl.build_image(plan.image, context, text, dry_run=True)
        else:
            with tempfile.TemporaryDirectory(prefix="edgeflow-build-") as tmp:
                context = dockerfile.stage_context(project, Path(tmp) / slug, text, exclude)
                kubectl.build_image(plan.image, context, text, dry_run=False)
        kubectl.push_image(plan.image, dry_run=dry_run)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", required=False, type=click.Path(dir_okay=True, path_type=str))
@click.option("-c", "--config", "configs", multiple=True, metavar="FILE",
              help="A pipeline file merged over FILE's (as given to deploy).")
@click.option("--namespace", "-n", default=DEFAULT_NAMESPACE, show_default=True, metavar="N",
              help="The namespace it was deployed to.")
@click.option("--kube-context", metavar="C", help="kubectl context (default: the current one).")
@click.option("--dry-run", is_flag=True, help="Print the kubectl command instead of running it.")
def clean(file: str | None, configs: tuple[str, ...], namespace: str, kube_context: str | None,
          dry_run: bool) -> None:
    """Remove what `edgeflow deploy FILE` created, and nothing else.

    Deletes Deployments, StatefulSets, Services, ConfigMaps and Secrets labelled
    app.kubernetes.io/managed-by=edgeflow and app.kubernetes.io/instance=<app> in the namespace; the
    namespace itself stays (other things may live in it).
    """
    do_clean(file, namespace, kube_context, dry_run, configs)
