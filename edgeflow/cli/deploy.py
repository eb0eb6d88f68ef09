"""``edgeflow deploy FILE`` and ``edgeflow clean FILE``: the app on Kubernetes, and off it again.

    edgeflow deploy main.py --registry docker.io/me --namespace demo              build, push, write, apply
    edgeflow deploy main.py --registry docker.io/me --namespace demo --dry-run --no-build   write k8s/ only
    edgeflow clean main.py --namespace demo        (or: edgeflow deploy main.py --namespace demo --clean)

Steps of a deploy: load FILE (as ``python FILE``) and validate its graph; write the manifests into --output
(see edgeflow.deploy.manifests for what they hold); build and push the project's image with docker (unless
--no-build); ``kubectl apply -f OUTPUT`` (unless --dry-run, which prints each command instead of running it).
"""

from __future__ import annotations

import re
import secrets
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


def _project(file: str) -> tuple[Path, str]:
    """(project folder, the pipeline file's path inside it)."""
    from edgeflow.cli import _load

    path = _load.resolve(file).resolve()
    return path.parent, path.name


def _summary(objects: list[dict]) -> str:
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    return ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in counts.items())


def do_clean(file: str, namespace: str, context: str | None, dry_run: bool) -> None:
    """Delete what deploy created for FILE's app in ``namespace`` (by label; the Namespace stays)."""
    from edgeflow.cli import _load
    from edgeflow.deploy import kubectl, manifests

    app = _load.load_app(file)
    kubectl.delete(namespace, manifests.selector(app.name), context=context, dry_run=dry_run)
    click.echo(f"{'would remove' if dry_run else 'removed'} the objects of app {app.name!r} in namespace "
               f"{namespace!r} (selector {manifests.selector(app.name)}); the namespace itself is left")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(dir_okay=True, path_type=str))
@click.option("--registry", metavar="R", help="Where the image goes, e.g. docker.io/yourname (required "
              "unless --clean).")
@click.option("--namespace", "-n", required=True, metavar="N", help="Kubernetes namespace (created).")
@click.option("--output", "-o", default="k8s", show_default=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path), help="Where the manifests are written.")
@click.option("--dry-run", is_flag=True, help="Write the manifests; print the docker and kubectl commands "
              "instead of running them.")
@click.option("--no-build", is_flag=True, help="Use an existing image: no docker build or push.")
@click.option("--kube-context", metavar="C", help="kubectl context (default: the current one).")
@click.option("--tag", metavar="T", help="Image tag (default: sha-<hash of the project's files>).")
@click.option("--clean", is_flag=True, help="Remove what an earlier deploy of this app created instead.")
def deploy(file: str, registry: str | None, namespace: str, output: Path, dry_run: bool, no_build: bool,
           kube_context: str | None, tag: str | None, clean: bool) -> None:
    """Deploy FILE's app to Kubernetes: image, manifests in --output, kubectl apply.

    One image for the project; per node a Deployment running `edgeflow run FILE --node NAME` (nodes of one
    shared-memory group share a Pod); the control Redis (and the data Redis for a DualRedisBroker) with a
    generated password in a Secret; the gateway's NodePort Service.
    """
    if clean:
        do_clean(file, namespace, kube_context, dry_run)
        return
    if not registry:
        raise click.UsageError("Missing option '--registry' (or pass --clean).")
    from edgeflow import __version__
    from edgeflow.cli import _load
    from edgeflow.deploy import dockerfile, kubectl, manifests, render

    graph = _load.load_app(file).graph()
    project, inside = _project(file)
    tag = tag or dockerfile.content_tag(project, __version__, exclude=[output])
    image = image_ref(registry, graph.app, tag)
    # a redeploy keeps the password: a new one would restart both Redis and break every client
    password = render.existing_password(output, manifests.secret_name(graph.app)) or secrets.token_hex(24)
    objects = manifests.build(graph, manifests.DeployConfig(image=image, namespace=namespace,
                                                            password=password, file=inside))
    written, stale = render.write(objects, output, source=file)
    click.echo(f"app {graph.app}: {_summary(objects)} in {render.relative(output)}/")
    for path in written:
        click.echo(f"  wrote {render.relative(path)}")
    for path in stale:
        click.echo(f"  removed {render.relative(path)} (no longer part of the app)")
    if graph.broker is None:
        click.echo("note: the app has no broker; the cluster gets a Redis anyway, since each node has its "
                   "own Pod", err=True)
    if no_build:
        click.echo(f"image: {image} (--no-build: it must exist already)", err=True)
    else:
        own = (project / "Dockerfile").is_file()
        text = None if own else dockerfile.dockerfile(__version__,
                                                      requirements=(project / "requirements.txt").is_file())
        kubectl.build_image(image, project, text, dry_run=dry_run)
        kubectl.push_image(image, dry_run=dry_run)
    kubectl.apply(output, context=kube_context, dry_run=dry_run)
    if dry_run:
        click.echo("dry run: nothing was built, pushed or applied", err=True)
    else:
        click.echo(f"deployed: kubectl get pods -n {namespace} -l {manifests.selector(graph.app)}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(dir_okay=True, path_type=str))
@click.option("--namespace", "-n", required=True, metavar="N", help="The namespace it was deployed to.")
@click.option("--kube-context", metavar="C", help="kubectl context (default: the current one).")
@click.option("--dry-run", is_flag=True, help="Print the kubectl command instead of running it.")
def clean(file: str, namespace: str, kube_context: str | None, dry_run: bool) -> None:
    """Remove what `edgeflow deploy FILE` created, and nothing else.

    Deletes Deployments, StatefulSets, Services, ConfigMaps and Secrets labelled
    app.kubernetes.io/managed-by=edgeflow and app.kubernetes.io/instance=<app> in the namespace; the
    namespace itself stays (other things may live in it).
    """
    do_clean(file, namespace, kube_context, dry_run)
