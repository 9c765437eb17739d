"""garage_cluster's work: make a Garage cluster's layout match the inputs, and observe it.

A change goes in this order, and every refusal comes before the first
staging request (the connections made before that change no layout):

1. the inputs: each node named once, storage nodes in at least
   ``replicationFactor`` zones;
2. the cluster: its status and layout; staged changes left by someone else
   are refused (or reverted, with ``pendingChanges = "revert"``);
3. the nodes: found in the cluster's status by RPC address or host; the
   ones it does not know are asked their id (their own ``adminEndpoint``)
   and connected; a node the cluster cannot reach is refused;
4. the change: at most ``max_leaving`` storage nodes taken out at once;
5. staging, then v2's PreviewClusterLayoutChanges (a layout Garage cannot
   compute is reverted and refused), then ApplyClusterLayout as version
   current + 1 (see :mod:`.apply`), then waiting until healthy.
"""

from __future__ import annotations

import time

from fediversity_providers.core.errors import AccessDenied, Conflict, InvalidInput, ProviderError, Unreachable

from . import plan
from .layoutapi import Layout

__all__ = ["converge", "read"]


def connect(inputs: dict, ctx, endpoint: str | None = None, version: str | None = None, tunnel=None) -> Layout:
    """The layout calls on ``endpoint`` (default: the inputs' adminEndpoint).

    With ``ssh``, every admin request goes through the tunnel to that one
    machine (``tunnel``: one already checked); a node's own ``adminEndpoint``
    through its own machine when its ``ssh`` is whole (:func:`_tunnel_to`).
    """
    from fediversity_providers.providers.garage_bucket import admin
    from fediversity_providers.providers.garage_bucket.provider import read_token, tunnel_of

    if tunnel is None:
        tunnel = tunnel_of(inputs, ctx, endpoint)
    token = read_token(inputs, ctx)
    client = admin.connect(endpoint or inputs["adminEndpoint"], token, version or inputs.get("adminApiVersion", "auto"),
                           timeout=inputs.get("requestTimeout", 10), retry_timeout=inputs.get("retryTimeout", 60),
                           deadline=getattr(ctx, "deadline", None), log=lambda line: ctx.log("%s", line),
                           tunnel=tunnel)
    return Layout(client)


def _tunnel_to(node: plan.Node, api: Layout, ctx):
    """How to reach ``node``'s own admin API; with ``ssh``, through its own machine when its ``ssh`` is whole.

    A node's ``adminEndpoint`` is as *that* node sees it (``http://127.0.0.1:3903``
    on each node), so it goes through an SSH connection to that node, pinned
    to its own host key.  Without one, through the cluster's tunnel (an
    address the first node reaches), or directly.
    """
    if node.machine is None or api.c.t.tunnel is None:  # without ssh, every endpoint is reached directly
        return api.c.t.tunnel
    from fediversity_providers.providers.garage_bucket.provider import plain_http
    from fediversity_providers.providers.garage_bucket.tunnel import Tunnel

    plain_http(node.admin_endpoint, field=f"{node.field}.adminEndpoint")
    return Tunnel(node.machine, ctx)


def final(error: Exception) -> ProviderError:
    """Garage's final answers as the core's error kinds."""
    from fediversity_providers.providers.garage_bucket.admin import AdminError, classify

    return classify(error) if isinstance(error, AdminError) else error


def converge(inputs: dict, resource, ctx) -> dict:
    from fediversity_providers.providers.garage_bucket.admin import AdminError

    try:
        return _converge(inputs, resource, ctx)
    except AdminError as exc:
        raise final(exc) from None


def _converge(inputs: dict, resource, ctx) -> dict:
    rf = inputs["replicationFactor"]
    nodes = plan.nodes_of(inputs)
    plan.check_zones(nodes, rf)
    if inputs.get("ssh"):  # the nodes' own endpoints go through the tunnel too
        from fediversity_providers.providers.garage_bucket.provider import plain_http

        for node in nodes:
            if node.admin_endpoint:
                plain_http(node.admin_endpoint, field=f"{node.field}.adminEndpoint")
    api = connect(inputs, ctx)
    status, layout = api.status(), api.layout()
    names = _names(status)
    ids = _find(api, inputs, ctx, nodes, status)
    names.update({ids[n.name]: n.name for n in nodes})
    wanted = {ids[n.name]: n.role for n in nodes}
    change = plan.changes(wanted, layout["roles"])
    staged = layout["staged"]
    if staged and staged != change:
        if inputs.get("pendingChanges") != "revert":
            raise plan.foreign_staged(staged, names)
        ctx.progress("reverting", "staged changes this resource did not make: " + plan.describe(staged, names))
        layout = api.revert(layout["version"])
        change = plan.changes(wanted, layout["roles"])
    plan.check_removals(change, layout["roles"], rf, names)
    if change:
        from .apply import apply_once

        if layout["staged"] != change:
            ctx.progress("staging", plan.describe(change, names))
            layout = api.stage(change)
            if layout["staged"] != change:
                others = {i: r for i, r in layout["staged"].items() if change.get(i, "-") != r}
                raise Conflict("someone staged other layout changes at the same time: " + plan.describe(others, names),
                               field="pendingChanges",
                               hint="look at the layout (garage layout show); nothing was applied, and this "
                                    "resource's changes are still staged beside them")
        _preview(api, layout, change, names)
        try:
            applied = apply_once(api, layout["version"] + 1, wanted, change, names, inputs, ctx)
        except ProviderError as exc:
            if not isinstance(exc, Conflict):
                _unstage(api, layout["version"], change, exc, ctx)
            raise
        _wait_healthy(api, inputs, ctx, applied, ids, nodes)
    return outputs(api, inputs, nodes, ids, None)


def _names(status: dict) -> dict[str, str]:
    return {n["id"]: n["addr"] or n["hostname"] or n["id"][:16] for n in status["nodes"]}


def _find(api: Layout, inputs: dict, ctx, nodes: list[plan.Node], status: dict) -> dict[str, str]:
    """Each node's id; the nodes the cluster does not know, or has lost, are connected."""
    ids: dict[str, str] = {}
    peers: list[tuple[plan.Node, str]] = []
    for node in nodes:
        found = next((s for s in status["nodes"] if node.matches(s)), None)
        if found is not None:
            ids[node.name] = found["id"]
            if not found["isUp"] and node.role != found["role"]:
                peers.append((node, f"{found['id']}@{node.rpc_address}"))
            continue
        if not node.admin_endpoint:
            raise Unreachable(
                f"the cluster at {inputs['adminEndpoint']} knows no node at {node.rpc_address}", field=node.field,
                hint="give the node's adminEndpoint so that its node id can be asked, or check rpcAddress against "
                     "the node's rpc_public_addr; nothing was staged")
        ctx.progress("asking its node id", node.name)
        try:
            node_id = connect(inputs, ctx, node.admin_endpoint, api.c.version, _tunnel_to(node, api, ctx)).self_id()
        except (ProviderError, OSError) as exc:
            if isinstance(exc, AccessDenied):
                raise
            raise Unreachable(f"could not ask node {node.name} its id at {node.admin_endpoint}: {final(exc)}",
                              field=f"{node.field}.adminEndpoint",
                              hint="check that the node runs and its admin API answers; nothing was staged") from None
        ids[node.name] = node_id
        peers.append((node, f"{node_id}@{node.rpc_address}"))
    if peers:
        ctx.progress("connecting", ", ".join(n.name for n, _ in peers))
        results = api.connect([p for _, p in peers])
        failed = [(n, r) for (n, _), r in zip(peers, results) if not r["success"]]
        if failed:
            from fediversity_providers.core.untrusted import printable

            raise Unreachable(
                "the cluster cannot reach " + "; ".join(f"node {n.name} ({printable(str(r['error']), 200)})"
                                                        for n, r in failed),
                field=failed[0][0].field,
                hint="check that the node runs, that its rpc_public_addr is this address and that it has the "
                     "cluster's rpc_secret; nothing was staged")
    return ids


def _unstage(api: Layout, version: int, change: dict, error: ProviderError, ctx) -> None:
    """After an apply that failed for good: revert our staged changes if they are still all there is,
    so that nothing is left half done (a later apply by someone else would carry them)."""
    try:
        seen = api.layout()
        if seen["version"] == version and seen["staged"] == change:
            api.revert(version)
            error.message += "; the staged changes were reverted, nothing was applied"
    except ProviderError as exc:
        ctx.log("could not revert the staged changes after the failed apply: %s", exc)


def _preview(api: Layout, layout: dict, change: dict, names: dict[str, str]) -> None:
    """v2: let Garage compute the new layout first; one it cannot compute is reverted and refused."""
    preview = api.preview()
    if preview is None or "error" not in preview:
        return
    api.revert(layout["version"])
    raise InvalidInput(f"Garage cannot compute this layout: {preview['error']}", field="nodes",
                       hint="fix the nodes' zones and capacities; the staged changes were reverted, nothing was applied")


def _wait_healthy(api: Layout, inputs: dict, ctx, version: int, ids: dict[str, str], nodes) -> None:
    limit = inputs.get("healthTimeout", 300)
    end = time.monotonic() + limit
    if getattr(ctx, "deadline", None) is not None:
        end = min(end, ctx.deadline - 1.0)
    delay = 0.05
    with ctx.waiting(f"the cluster to report itself healthy after layout version {version}", limit=limit):
        while True:
            health = api.health()
            if health["status"] == "healthy":
                return
            if time.monotonic() + delay > end:
                break
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    down = [n.name for n in nodes
            if not next((s["isUp"] for s in api.status()["nodes"] if s["id"] == ids[n.name]), False)]
    raise Unreachable(
        f"layout version {version} is applied, but the cluster is {health['status']}: "
        f"{health['storageNodesOk']} of {health['storageNodes']} storage nodes up"
        + (f" (down: {', '.join(down)})" if down else ""),
        hint="bring the nodes that are down back up and apply again: the layout will not be changed a second time")


# -- outputs and read ------------------------------------------------------------------------
def outputs(api: Layout, inputs: dict, nodes: list[plan.Node], ids: dict[str, str] | None, prev: dict | None) -> dict:
    status, layout, health = api.status(), api.layout(), api.health()
    names = _names(status)
    by_id = {s["id"]: s for s in status["nodes"]}
    drift: list[str] = []
    out_nodes = []
    for node in nodes:
        node_id = (ids or {}).get(node.name) or next((s["id"] for s in status["nodes"] if node.matches(s)), None)
        seen = by_id.get(node_id) if node_id else None
        role = layout["roles"].get(node_id) if node_id else None
        if node_id is None:
            drift.append(f"node {node.name} is not known to the cluster")
        elif seen is None or not seen["isUp"]:
            drift.append(f"node {node.name} is down")
        if node_id is not None and role != node.role:
            drift.append(f"node {node.name} has role {_role_text(role)} in the layout, the inputs say {_role_text(node.role)}")
        names[node_id or ""] = node.name
        out_nodes.append({"name": node.name, "id": node_id or "", "role": role,
                          "isUp": bool(seen and seen["isUp"]), "draining": bool(seen and seen["draining"])})
    listed = {n["id"] for n in out_nodes}
    for extra in sorted(set(layout["roles"]) - listed):
        drift.append(f"node {extra[:16]} ({names.get(extra, 'unknown address')}) has a role in the layout but is not in the inputs")
    if prev and prev.get("layoutVersion") is not None and layout["version"] != prev["layoutVersion"]:
        drift.append(f"layout version {layout['version']} is current, this resource last saw version {prev['layoutVersion']}")
    if layout["staged"]:
        drift.append("staged changes are pending: " + plan.describe(layout["staged"], names))
    return {"layoutVersion": layout["version"], "apiVersion": api.c.version, "replicationFactor": inputs["replicationFactor"],
            "nodes": out_nodes, "health": health, "drift": drift}


def _role_text(role: dict | None) -> str:
    if role is None:
        return "none"
    cap = "gateway" if role["capacity"] is None else f"capacity {role['capacity']}"
    return f"(zone {role['zone']}, {cap}, tags {role['tags']})"


def read(resource, ctx) -> dict:
    from fediversity_providers.providers.garage_bucket.admin import AdminError

    inputs, prev = resource.inputs, resource.outputs or {}
    nodes = plan.nodes_of(inputs)
    ids = {n["name"]: n["id"] for n in prev.get("nodes") or [] if n.get("id")}
    try:
        return outputs(connect(inputs, ctx), inputs, nodes, ids, prev)
    except AdminError as exc:
        raise final(exc) from None
