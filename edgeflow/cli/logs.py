"""``edgeflow logs NODE`` and ``edgeflow dashboard``: a deployed node's logs, and where the dashboard is.

    edgeflow logs detector -n demo -f          kubectl logs -l edgeflow.io/node=detector ... -f
    edgeflow logs detector -n demo --group vision     a node that shares a Pod with its group
    edgeflow dashboard                         http://localhost:$GATEWAY_HTTP_PORT/dashboard (a local run)
    edgeflow dashboard -n demo --open          the cluster's NodePort, opened in a browser
"""

from __future__ import annotations

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("node")
@click.option("--namespace", "-n", default="default", show_default=True, metavar="N", help="Namespace.")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new lines.")
@click.option("--tail", type=int, metavar="LINES", help="Only the last LINES lines of each container.")
@click.option("--group", metavar="G", help="The node's shared-memory group (its Pod is the group's).")
@click.option("--app", metavar="APP", help="Only this app's Pods (when several apps share the namespace).")
@click.option("--kube-context", metavar="C", help="kubectl context (default: the current one).")
@click.option("--dry-run", is_flag=True, help="Print the kubectl command instead of running it.")
@click.pass_context
def logs(ctx: click.Context, node: str, namespace: str, follow: bool, tail: int | None, group: str | None,
         app: str | None, kube_context: str | None, dry_run: bool) -> None:
    """Show the logs of NODE's Pods (every replica, each line prefixed with its Pod).

    NODE is the node's name as in the app; Pods are found by the label edgeflow.io/node (or
    edgeflow.io/group with --group) that `edgeflow deploy` puts on them.
    """
    from edgeflow.deploy import kubectl
    from edgeflow.deploy.manifests import dns_name

    dns = dns_name(node)
    parts = [f"edgeflow.io/group={dns_name(group)}"] if group else [f"edgeflow.io/node={dns}"]
    if app:
        parts.append(f"app.kubernetes.io/instance={dns_name(app)}")
    cmd = kubectl.logs_cmd(namespace, ",".join(parts), container=dns if group else None, follow=follow,
                           tail=tail, context=kube_context)
    code = kubectl.stream(cmd, dry_run=dry_run)
    if code:
        ctx.exit(code if code in (1, 130) else 1)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--namespace", "-n", metavar="N", help="Find the dashboard of the app deployed in this "
              "namespace (its gateway's NodePort) instead of a local run's.")
@click.option("--app", metavar="APP", help="With --namespace: the app (when several share the namespace).")
@click.option("--open", "open_browser", is_flag=True, help="Open it in a web browser.")
@click.option("--kube-context", metavar="C", help="kubectl context (default: the current one).")
@click.option("--dry-run", is_flag=True, help="With --namespace: print the kubectl commands instead.")
def dashboard(namespace: str | None, app: str | None, open_browser: bool, kube_context: str | None,
              dry_run: bool) -> None:
    """Print the gateway's dashboard URL (and open it with --open).

    Locally: http://localhost:$GATEWAY_HTTP_PORT/dashboard (default port 8000). With --namespace: a cluster
    node's address and the gateway's NodePort, read with kubectl.
    """
    if namespace is None:
        from edgeflow.config import settings
        url = f"http://localhost:{settings.GATEWAY_HTTP_PORT}/dashboard"
    else:
        from edgeflow.deploy import kubectl
        from edgeflow.deploy.manifests import MANAGED_BY, dns_name
        selector = f"app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/component=gateway"
        if app:
            selector += f",app.kubernetes.io/instance={dns_name(app)}"
        url = kubectl.node_port_url(namespace, selector, context=kube_context, dry_run=dry_run)
        if url is None:
            return
    click.echo(url)
    if open_browser:
        import webbrowser
        webbrowser.open(url)
