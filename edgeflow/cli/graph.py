"""``edgeflow graph FILE``: the validated pipeline, each link with its QoS and the route it would take.

    edgeflow graph main.py                    text: nodes, then one line per link (as `python main.py` prints)
    edgeflow graph main.py --format mermaid   a Mermaid flowchart (paste into Markdown)
    edgeflow graph main.py --format dot       Graphviz (edgeflow graph main.py -f dot | dot -Tsvg > g.svg)
    edgeflow graph main.py --format json      {"app", "broker", "nodes": [...], "edges": [...]} on stdout only
    edgeflow graph main.py --format yaml > pipeline.yaml     the app as a pipeline file (edgeflow.pipeline)
    edgeflow graph pipeline.yaml -c site.yaml                 a pipeline file, merged with others

The JSON object is the one the gateway's ``/api/graph`` serves: ``Graph.to_dict()`` with ``transport`` and
``reason`` on every edge (one edge per link; replicas are not expanded).

Secrets never show: the graph view masks options named like one (password, token, ...) and URL passwords,
and for a pipeline file also every value that came from a secret ``${VAR}`` (edgeflow.pipeline.subst).
``--format yaml`` of a pipeline file writes the merged files with their ``${VAR}`` references as written.
"""

from __future__ import annotations

import json
from typing import Any

import click

FORMATS = ("text", "mermaid", "dot", "json", "yaml")


def edge_routes(graph: Any) -> dict[tuple[str, str], tuple[str, str]]:
    """(source, target) -> (transport, reason) for every link: the one place that decides routes here.

    ``edgeflow graph`` shows the app as ``python FILE`` runs it, every node on this host, so both ends of a
    link are this host for ``edgeflow.placement.choose_route`` (shm, same host). A run spread over hosts
    decides per edge at run time (the router) and shows it in the gateway's /api/graph.
    """
    from edgeflow import placement

    here = placement.this_host()
    broker = getattr(graph.broker, "kind", None) if graph.broker is not None else None
    routes = {}
    for edge in graph.edges:
        route = placement.choose_route(here, here, target_kind=graph.node(edge.target).kind, broker_kind=broker)
        routes[(edge.source, edge.target)] = (route.transport, route.reason)
    return routes


def graph_view(graph: Any) -> dict[str, Any]:
    """``Graph.to_dict()`` with ``transport`` and ``reason`` added to each edge (the /api/graph object)."""
    view = graph.to_dict()
    routes = edge_routes(graph)
    for edge, spec in zip(view["edges"], graph.edges):
        edge["transport"], edge["reason"] = routes[(spec.source, spec.target)]
    return view


def _node_line(spec: Any) -> str:
    facts = []
    if spec.fps is not None:
        facts.append(f"{spec.fps:g} fps")
    if spec.replicas != 1:
        facts.append(f"{spec.replicas} replicas")
    for name in ("device", "group", "node_port"):
        if getattr(spec, name) is not None:
            facts.append(f"{name} {getattr(spec, name)}")
    return f"{spec.kind:<9} {', '.join(facts)}".rstrip()


def format_text(graph: Any) -> str:
    """Nodes with their kind and options, then one line per link in the runtime's wording."""
    from edgeflow.runtime import plan

    width = max((len(spec.name) for spec in graph.nodes), default=0)
    lines = [f"app {graph.app}: {len(graph.nodes)} nodes, {len(graph.edges)} links"]
    if graph.broker is not None:
        lines[0] += f"; broker {graph.broker.redacted()} (not used while every node runs on this host)"
    lines.append("nodes:")
    lines += [f"  {spec.name:<{width}}  {_node_line(spec)}" for spec in graph.nodes]
    lines.append("links:")
    lines += [f"  {line}" for line in plan.edge_lines(graph, edge_routes(graph))]
    template = getattr(graph, "streams", None)
    if template is not None:                  # what each stream activated at run time becomes
        chain = " -> ".join(["stream-<id>-" + role for role in template.roles()] + [", ".join(template.to)])
        lines += ["streams (each activated stream, see docs/dynamic.md):", f"  {chain}, {template.qos.name}"]
    return "\n".join(lines)


def _label(view_edge: dict[str, Any]) -> str:
    parts = [view_edge["qos"], view_edge["transport"]]
    parts += [f"{key} {view_edge[key]}" for key in ("channel", "codec") if view_edge.get(key)]
    return ", ".join(parts)


def _node_label(node: dict[str, Any]) -> str:
    extra = f", x{node['replicas']}" if node["replicas"] != 1 else ""
    return f"{node['name']} ({node['type']}{extra})"


def format_mermaid(view: dict[str, Any]) -> str:
    """A Mermaid ``flowchart LR``; ids are n0, n1... (node names may be Mermaid keywords), labels quoted."""
    ids = {node["name"]: f"n{i}" for i, node in enumerate(view["nodes"])}
    lines = ["flowchart LR"]
    groups: dict[str, list[str]] = {}
    for node in view["nodes"]:
        line = f'    {ids[node["name"]]}["{_node_label(node)}"]'
        if node.get("group"):
            groups.setdefault(node["group"], []).append(line)
        else:
            lines.append(line)
    for group, members in groups.items():
        lines += [f'    subgraph {"g_" + group.replace("-", "_")}["shm group {group}"]', *members, "    end"]
    for edge in view["edges"]:
        arrow = "==>" if edge["qos"] == "DURABLE" else "-->"
        lines.append(f'    {ids[edge["source"]]} {arrow}|"{_label(edge)}"| {ids[edge["target"]]}')
    return "\n".join(lines)


def format_dot(view: dict[str, Any]) -> str:
    """A Graphviz digraph; DURABLE links are bold, shared-memory groups are clusters."""
    q = json.dumps                                   # a JSON string is a valid DOT quoted string
    lines = [f"digraph {q(view['app'])} {{", "    rankdir=LR;", "    node [shape=box];"]
    groups: dict[str, list[str]] = {}
    for node in view["nodes"]:
        line = f"    {q(node['name'])} [label={q(_node_label(node))}];"
        groups.setdefault(node.get("group") or "", []).append(line)
    lines += groups.pop("", [])
    for i, (group, members) in enumerate(groups.items()):
        lines += [f"    subgraph cluster_{i} {{", f"        label={q('shm group ' + group)};", *members,
                  "    }"]
    for edge in view["edges"]:
        style = ", style=bold" if edge["qos"] == "DURABLE" else ""
        lines.append(f"    {q(edge['source'])} -> {q(edge['target'])} [label={q(_label(edge))}{style}];")
    lines.append("}")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", required=False, type=click.Path(dir_okay=True, path_type=str))
@click.option("-c", "--config", "configs", multiple=True, metavar="FILE",
              help="A pipeline file (YAML or JSON) merged over FILE's; repeat it: later files win.")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format (yaml: a pipeline file that loads to the same graph).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def graph(file: str | None, configs: tuple[str, ...], fmt: str, as_json: bool) -> None:
    """Validate FILE's pipeline and print it with each link's QoS and route.

    With --format json, stdout carries only the JSON object (what the gateway's /api/graph serves);
    anything the file prints while loading goes to stderr. --format yaml writes the app as a pipeline file
    (write it next to main.py: it names main.py's classes as main:Class).
    """
    import contextlib
    import sys

    from edgeflow.cli import _load

    fmt = "json" if as_json else fmt
    with contextlib.redirect_stdout(sys.stderr), _load.reported():     # a script's prints must not corrupt it
        app = _load.load_any(file, configs)
        g = app.graph()
    source = _source(app)
    if fmt == "yaml":
        click.echo(_yaml(app, source, file), nl=False)
        return
    mask = source.secrets.mask if source is not None else (lambda value: value)
    if fmt == "text":
        click.echo(mask(format_text(g)))
        return
    view = mask(graph_view(g))
    click.echo({"json": lambda v: json.dumps(v, indent=2), "mermaid": format_mermaid,
                "dot": format_dot}[fmt](view))


def _source(app: Any) -> Any:
    """The pipeline Source of an app loaded from files, or None (edgeflow.pipeline not imported: none)."""
    import sys
    loaded = sys.modules.get("edgeflow.pipeline.load")
    return loaded.source_of(app) if loaded is not None else None


def _yaml(app: Any, source: Any, file: str | None) -> str:
    from edgeflow.cli import _load
    from edgeflow.pipeline import export

    if source is not None:
        return export.raw_yaml(source)
    text, notes = export.graph_yaml(app, _load.resolve(file))
    for note in notes:
        click.echo(f"note: {note}", err=True)
    return text
