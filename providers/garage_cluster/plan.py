"""What a garage_cluster change would do, and the refusals that keep data safe.

Pure functions over the inputs and the layout as Garage reports it; no
request is sent from here, so every refusal happens before anything is
staged.  The rules (see docs/garage_cluster.md):

- the storage nodes must span at least ``replicationFactor`` zones, or Garage
  cannot put the copies of an object in different zones;
- one version may take at most ``max(1, q - 1)`` storage nodes out of the
  layout, ``q`` being Garage's write quorum (``rf + 1 - ceil(rf / 2)``): an
  object is only sure to be on ``q`` of its ``rf`` nodes, so taking ``q`` of
  them away at once could leave some data with no copy on a node that stays
  (and all of it with fewer than ``rf`` copies while Garage rebuilds them);
- staged changes that this resource did not make are someone else's.
"""

from __future__ import annotations

from fediversity_providers.core.errors import Conflict, InvalidInput

__all__ = ["Node", "nodes_of", "check_zones", "changes", "check_removals", "describe", "max_leaving",
           "write_quorum", "role_of"]


class Node:
    """One entry of the inputs' ``nodes``: its name, RPC address, host, admin endpoint and wanted role."""

    def __init__(self, index: int, entry: dict) -> None:
        self.index = index
        self.field = f"nodes[{index}]"
        ssh = entry.get("ssh")
        self.host = ssh["host"] if ssh else None
        if bool(entry.get("rpcAddress")) == bool(ssh):
            raise InvalidInput("give exactly one of rpcAddress and ssh", field=self.field,
                               hint="name the node by its RPC address (host:port) or by its machine; "
                                    "nothing was staged")
        if ssh:
            host = self.host if ":" not in self.host else f"[{self.host}]"
            self.rpc_address = f"{host}:{entry.get('rpcPort', 3901)}"
            self.name = self.host
        else:
            self.rpc_address = entry["rpcAddress"]
            self.name = self.rpc_address
        self.admin_endpoint = entry.get("adminEndpoint")
        # The node's machine, when given whole (existing_vm's ssh output, with
        # its pinned host key): its own admin API is reached through it.
        self.machine = ssh if ssh and ssh.get("hostPublicKey") else None
        self.role = role_of(entry)

    def matches(self, status_node: dict) -> bool:
        """Whether a node of GetClusterStatus is this one: by RPC address, else by host or hostname."""
        addr = status_node.get("addr")
        if addr == self.rpc_address:
            return True
        if self.host is None:
            return False
        host = addr.rsplit(":", 1)[0].strip("[]") if addr else None
        return self.host in (host, status_node.get("hostname"))


def role_of(entry: dict) -> dict:
    return {"zone": entry["zone"], "capacity": entry.get("capacity"), "tags": list(entry.get("tags") or [])}


def write_quorum(rf: int) -> int:
    """Garage's write quorum (consistent mode): rf + 1 - ceil(rf / 2)."""
    return rf + 1 - (rf + 1) // 2


def max_leaving(rf: int) -> int:
    """Storage nodes one version may take out of the layout."""
    return max(1, write_quorum(rf) - 1)


def nodes_of(inputs: dict) -> list[Node]:
    nodes = [Node(i, e) for i, e in enumerate(inputs["nodes"])]
    seen: dict[str, int] = {}
    for node in nodes:
        if node.rpc_address in seen:
            raise InvalidInput(f"the node {node.name!r} is listed twice (also as nodes[{seen[node.rpc_address]}])",
                               field=node.field, hint="list each node once; nothing was staged")
        seen[node.rpc_address] = node.index
    return nodes


def check_zones(nodes: list[Node], rf: int) -> None:
    """Refuse a layout whose storage nodes span fewer zones than the replication factor."""
    zones = sorted({n.role["zone"] for n in nodes if n.role["capacity"] is not None})
    if len(zones) < rf:
        listed = ", ".join(zones) if zones else "none: every node is a gateway"
        raise InvalidInput(
            f"the storage nodes are in {len(zones)} zone(s) ({listed}), fewer than replicationFactor = {rf}: "
            f"Garage could not keep the {rf} copies of each object in different zones",
            field="nodes",
            hint=f"give storage nodes (capacity not null) in at least {rf} zones, or set replicationFactor to "
                 "the nodes' replication_factor; nothing was staged")


def changes(wanted: dict[str, dict], current: dict[str, dict]) -> dict[str, dict | None]:
    """Role changes that turn ``current`` into ``wanted`` (None: remove the node's role)."""
    out: dict[str, dict | None] = {i: r for i, r in wanted.items() if current.get(i) != r}
    out.update({i: None for i in current if i not in wanted})
    return out


def leaving(change: dict[str, dict | None], current: dict[str, dict]) -> list[str]:
    """Storage nodes a change takes out of the layout (removed, or made gateways)."""
    return sorted(i for i, r in change.items()
                  if i in current and current[i]["capacity"] is not None and (r is None or r["capacity"] is None))


def check_removals(change: dict[str, dict | None], current: dict[str, dict], rf: int, names: dict[str, str]) -> None:
    gone = leaving(change, current)
    limit = max_leaving(rf)
    if len(gone) <= limit:
        return
    q = write_quorum(rf)
    raise InvalidInput(
        f"this change takes {len(gone)} storage nodes out of the layout at once ({', '.join(names.get(i, i[:16]) for i in gone)}): "
        f"with replicationFactor = {rf} an object is only sure to be on {q} of its {rf} nodes, so some data could be "
        f"left with fewer than {rf} copies, or none, on the nodes that stay",
        field="nodes",
        hint=f"take out at most {limit} storage node(s) per apply: keep the others in nodes for now, wait until the "
             "cluster is healthy, then remove them in a later update; nothing was staged")


def describe(change: dict[str, dict | None], names: dict[str, str]) -> str:
    """Staged changes in words: "node 1a2b… (10.0.0.1:3901) → zone a, capacity 1000, tags []"."""
    parts = []
    for i, r in sorted(change.items()):
        who = f"node {i[:16]}" + (f" ({names[i]})" if i in names else "")
        if r is None:
            parts.append(f"{who} → removed")
        else:
            cap = "gateway" if r["capacity"] is None else f"capacity {r['capacity']}"
            parts.append(f"{who} → zone {r['zone']}, {cap}, tags {r['tags']}")
    return "; ".join(parts)


def foreign_staged(staged: dict, names: dict[str, str]) -> Conflict:
    return Conflict(
        f"the layout has staged changes that this resource did not make: {describe(staged, names)} "
        "(Garage does not record who staged them: another operator, or another deployment)",
        field="pendingChanges",
        hint="apply or revert them yourself (garage layout show), or set pendingChanges = \"revert\" to have them "
             "discarded; nothing was staged")
