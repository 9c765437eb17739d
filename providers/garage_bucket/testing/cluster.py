"""An emulated multi-node Garage cluster: nodes, connections, a versioned layout and its health.

:class:`GarageCluster` makes several :class:`~.emulator.GarageEmulator` nodes,
each with its own node id, RPC address and admin API (v1 and v2, checked
against Garage's documents like every emulated answer).  They share one
cluster-wide state, as Garage's nodes do once connected: buckets and keys,
and the layout history.  What is emulated follows Garage's own code
(``rpc/layout/history.rs``, ``rpc/system.rs``, ``api/admin/cluster.rs`` and
``layout.rs`` of 1.2 and 2.0):

- **Connecting.** ``ConnectClusterNodes`` (v1 ``AddNode``) takes
  ``<id>@<addr>``; it succeeds when a node with that id listens at that
  address, is up and holds the same ``rpc_secret``.  Connected nodes know each
  other (Garage gossips the peer list), so membership is one set.
- **Staging.** ``UpdateClusterLayout`` (v1 ``AddLayout``) stages roles; a
  later change for the same node replaces the earlier one, and a staged role
  equal to the current one is not listed.  ``RevertClusterLayout`` clears them.
- **Applying.** ``ApplyClusterLayout`` must name the version current+1, or
  Garage answers 500 ``Invalid new layout version``; with fewer storage nodes
  than the replication factor it answers 500 too, and nothing changes.  The
  new version assigns each of the 256 partitions to ``replication_factor``
  storage nodes in as many distinct zones as there are (up to that factor).
  Older versions stay active (draining) until every storage node of the new
  one is up (an invalid one, such as the empty version 0, goes at once): then the data is taken to be in place (the emulator does not
  move data, it does not wait either).
- **Health.** As ``System::health``: a partition has quorum when every active
  version's set of nodes for it has at least the write quorum up; the cluster
  is ``healthy`` when all partitions have all their nodes up and every
  storage node is up, ``degraded`` when all have quorum, else ``unavailable``.
- **Faults.** Each node has the emulator's fault switches (``lost`` answers,
  5xx, ...); :meth:`GarageCluster.down` takes a node away (its admin API drops
  every connection, the others see it as not up); :meth:`GarageCluster.before`
  runs a function just before the next request to an operation (a concurrent
  layout change by someone else, say).
"""

from __future__ import annotations

import secrets
import threading
from typing import Any, Callable

from .emulator import CLUSTER_OPERATIONS, ApiError, GarageEmulator

__all__ = ["GarageCluster", "Node", "CLUSTER_OPERATIONS", "write_quorum"]

PARTITIONS = 256


def write_quorum(rf: int) -> int:
    """Garage's write quorum in consistent mode: rf + 1 - ceil(rf / 2)."""
    return rf + 1 - (rf + 1) // 2


class Node:
    """One emulated Garage daemon: its id, RPC address, secret and whether it runs."""

    def __init__(self, emulator: GarageEmulator, rpc_addr: str, hostname: str, secret: str) -> None:
        self.emulator = emulator
        self.id = secrets.token_hex(32)
        self.rpc_addr, self.hostname, self.secret = rpc_addr, hostname, secret
        self.up = True

    @property
    def endpoint(self) -> str:
        return self.emulator.endpoint

    def __repr__(self) -> str:
        return f"Node({self.hostname} {self.id[:16]} at {self.rpc_addr})"


class GarageCluster:
    """``count`` emulated nodes of one Garage cluster; node 0 is the one first started.

    Each node's RPC address is ``10.0.0.<n>:3901`` (a name only: nothing
    listens there) and its hostname ``garage<n>``.  Nothing is connected and
    the layout is empty (version 0) until a client says otherwise; with
    ``connected`` the nodes start as one cluster (as with ``bootstrap_peers``).
    """

    def __init__(self, count: int = 3, *, garage_version: int = 2, replication_factor: int = 3,
                 token: str | None = None, connected: bool = False, spec_dir=None) -> None:
        self.replication_factor = replication_factor
        self.lock = threading.RLock()
        self.secret = secrets.token_hex(32)
        self.nodes: list[Node] = []
        self.members: set[str] = set()
        self.version = 0
        self.roles: dict[str, dict] = {}  # the current version's roles
        self.staged: dict[str, dict | None] = {}
        #: every version: {"version", "roles", "assignment" (partition -> node ids), "partitionSize"}
        self.history: list[dict] = [{"version": 0, "roles": {}, "assignment": [], "partitionSize": 0}]
        self.active_from = 0  # index in history of the oldest version still active (draining)
        self.applied: list[int] = []  # versions applied through the admin API, in order
        self._before: list[tuple[str, Callable[[], None]]] = []
        token = token or secrets.token_hex(16)
        for n in range(count):
            self.add_node(garage_version=garage_version, token=token, spec_dir=spec_dir)
        self.members.add(self.nodes[0].id)
        if connected:
            self.members.update(n.id for n in self.nodes)

    # -- set-up and switches ---------------------------------------------------------------
    def add_node(self, *, garage_version: int | None = None, token: str | None = None, secret: str | None = None,
                 spec_dir=None) -> Node:
        """Start one more node (not yet connected); ``secret`` other than the cluster's makes it unreachable."""
        first = self.nodes[0].emulator if self.nodes else None
        emu = GarageEmulator(garage_version or first.garage_version, token=token or first.token, spec_dir=spec_dir)
        if first is not None:  # cluster-wide metadata, one lock
            emu.buckets, emu.keys, emu.lock = first.buckets, first.keys, first.lock
        else:
            emu.lock = self.lock
        n = len(self.nodes) + 1
        node = Node(emu, f"10.0.0.{n}:3901", f"garage{n}", secret or self.secret)
        emu.cluster, emu.node = self, node
        self.nodes.append(node)
        return node

    @property
    def token(self) -> str:
        return self.nodes[0].emulator.token

    @property
    def endpoint(self) -> str:
        return self.nodes[0].endpoint

    @property
    def violations(self) -> list[str]:
        return [v for n in self.nodes for v in n.emulator.violations]

    def node(self, key: str) -> Node:
        """A node by id, RPC address or hostname."""
        return next(n for n in self.nodes if key in (n.id, n.rpc_addr, n.hostname))

    def down(self, node: Node) -> None:
        node.up = False

    def up(self, node: Node) -> None:
        node.up = True

    def before(self, operation: str, action: Callable[[], None]) -> None:
        """Run ``action`` (once) just before the next request to ``operation`` is carried out."""
        with self.lock:
            self._before.append((operation, action))

    def count(self, operation: str) -> int:
        return sum(n.emulator.count(operation) for n in self.nodes)

    def close(self) -> None:
        for n in self.nodes:
            n.emulator.close()

    # -- what another administrator does ------------------------------------------------------
    def stage(self, node_id: str, role: dict | None) -> None:
        """Stage a role (``{"zone", "capacity", "tags"}``) or a removal (None), as ``garage layout assign``."""
        with self.lock:
            self.staged[node_id] = None if role is None else dict(role)

    def apply(self) -> int:
        """Apply the staged changes as the next version, as ``garage layout apply``; the new version."""
        with self.lock:
            self._apply(self.version + 1)
            return self.version

    # -- the model -------------------------------------------------------------------------
    def is_up(self, node_id: str) -> bool:
        node = next((n for n in self.nodes if n.id == node_id), None)
        return node is not None and node.up and node_id in self.members

    def _settle(self) -> None:
        """Older versions stop draining once every storage node of the current one is up; an invalid
        one (no partitions assigned, as version 0) is pruned at once, as Garage's cleanup does."""
        current = self.history[-1]
        while self.active_from < len(self.history) - 1 and not self.history[self.active_from]["assignment"]:
            self.active_from += 1
        if all(self.is_up(i) for i, r in current["roles"].items() if r["capacity"] is not None):
            self.active_from = len(self.history) - 1

    def _staged_visible(self) -> dict[str, dict | None]:
        return {i: r for i, r in self.staged.items() if self.roles.get(i) != r}

    def _next_roles(self) -> dict[str, dict]:
        roles = dict(self.roles)
        for i, r in self.staged.items():
            if r is None:
                roles.pop(i, None)
            else:
                roles[i] = dict(r)
        return roles

    def _compute(self, roles: dict[str, dict]) -> dict:
        """The next version from ``roles``, or ApiError 500 with Garage's message."""
        rf = self.replication_factor
        storage = sorted(i for i, r in roles.items() if r["capacity"] is not None)
        if len(storage) < rf:
            raise ApiError(500, "InternalError", f"Internal error: The number of nodes with positive capacity "
                                                 f"({len(storage)}) is smaller than the replication factor ({rf}).")
        zones: dict[str, list[str]] = {}
        for i in storage:
            zones.setdefault(roles[i]["zone"], []).append(i)
        names = sorted(zones)
        assignment = []
        for p in range(PARTITIONS):
            chosen: list[str] = []
            turn = 0
            while len(chosen) < rf:  # one node per zone, round and round, starting at a zone of its own
                zone = zones[names[(p + turn) % len(names)]]
                for k in range(len(zone)):
                    cand = zone[(p // len(names) + turn // len(names) + k) % len(zone)]
                    if cand not in chosen:
                        chosen.append(cand)
                        break
                turn += 1
            assignment.append(chosen)
        stored = {i: sum(i in s for s in assignment) for i in storage}
        size = min(roles[i]["capacity"] // stored[i] for i in storage if stored[i]) if storage else 0
        return {"roles": roles, "assignment": assignment, "partitionSize": size, "stored": stored,
                "zoneRedundancy": min(rf, len(names))}

    def _apply(self, version: int) -> list[str]:
        if version != self.version + 1:
            raise ApiError(500, "InternalError", "Internal error: Invalid new layout version")
        new = self._compute(self._next_roles())
        self.version = version
        self.roles = new["roles"]
        self.staged = {}
        self.history.append(dict(new, version=version))
        self.applied.append(version)
        self._settle()
        return ["==== COMPUTATION OF A NEW PARTITION ASSIGNATION ====", "",
                f"Partitions are replicated {self.replication_factor} times on at least "
                f"{new['zoneRedundancy']} distinct zones."]

    def health(self) -> dict:
        self._settle()
        rf = self.replication_factor
        quorum = write_quorum(rf)
        active = self.history[self.active_from:]
        storage = {i for v in active for i, r in v["roles"].items() if r["capacity"] is not None}
        known = [n for n in self.nodes if n.id in self.members]
        q = ok = 0
        for p in range(PARTITIONS):
            sets = [v["assignment"][p] if v["assignment"] else [] for v in active]
            if all(sum(self.is_up(i) for i in s) >= quorum and s for s in sets):
                q += 1
            if all(s and all(self.is_up(i) for i in s) for s in sets):
                ok += 1
        storage_ok = sum(self.is_up(i) for i in storage)
        if ok == PARTITIONS and storage_ok == len(storage):
            status = "healthy"
        elif q == PARTITIONS:
            status = "degraded"
        else:
            status = "unavailable"
        return {"status": status, "knownNodes": len(known), "connectedNodes": sum(n.up for n in known),
                "storageNodes": len(storage), "storageNodesOk": storage_ok, "partitions": PARTITIONS,
                "partitionsQuorum": q, "partitionsAllOk": ok}

    # -- rendering, per API version ----------------------------------------------------------
    @staticmethod
    def _role(r: dict) -> dict:
        return {"zone": r["zone"], "capacity": r["capacity"], "tags": list(r["tags"])}

    def layout_view(self, v: str, version: dict | None = None, staged: dict | None = None) -> dict:
        version = version or self.history[-1]
        staged = self._staged_visible() if staged is None else staged
        changes = [{"id": i, "remove": True} if r is None else {"id": i, **self._role(r)}
                   for i, r in sorted(staged.items())]
        roles = []
        for i, r in sorted(version["roles"].items()):
            item = {"id": i, **self._role(r)}
            if v == "v2":
                stored = version.get("stored", {}).get(i) if r["capacity"] is not None else None
                item.update(storedPartitions=stored,
                            usableCapacity=None if stored is None else stored * version["partitionSize"])
            roles.append(item)
        out = {"version": version["version"], "roles": roles, "stagedRoleChanges": changes}
        if v == "v2":
            out.update(parameters={"zoneRedundancy": "maximum"}, partitionSize=version["partitionSize"],
                       stagedParameters=None)
        return out

    def status_view(self, v: str, me: Node) -> dict:
        self._settle()
        ids = [n.id for n in self.nodes if n.id in self.members or n is me]
        draining = {i for ver in self.history[self.active_from:-1] for i, r in ver["roles"].items()
                    if r["capacity"] is not None and i not in self.roles}
        ids += [i for i in list(self.roles) + sorted(draining) if i not in ids]
        nodes = []
        for i in sorted(ids):
            node = next((n for n in self.nodes if n.id == i), None)
            role = self.roles.get(i)
            item = {"id": i, "role": None if role is None else ({"id": i, **self._role(role)} if v == "v1"
                                                               else self._role(role)),
                    "addr": node.rpc_addr if node else None, "hostname": node.hostname if node else None,
                    "isUp": self.is_up(i) if i != me.id else True,
                    "lastSeenSecsAgo": None if node is None or self.is_up(i) else 10,
                    "draining": i in draining}
            if v == "v2":
                item["garageVersion"] = "v2.0.0" if node else None
            nodes.append(item)
        out = {"layoutVersion": self.version, "nodes": nodes}
        if v == "v1":
            out = {"node": me.id, "garageVersion": "v1.2.0", "garageFeatures": ["lmdb", "sqlite"],
                   "rustVersion": "1.82.0", "dbEngine": "LMDB (using Heed crate)", **out}
        return out

    # -- the admin API -----------------------------------------------------------------------
    def dispatch(self, me: Node, v: str, op: str, q: dict, body: Any) -> tuple[int, Any]:
        with self.lock:
            for item in list(self._before):
                if item[0] == op:
                    self._before.remove(item)
                    item[1]()
                    break
            if v == "v1" and me.emulator.garage_version >= 2 and op not in ("GetHealth", "AddNode"):
                raise ApiError(400, "InvalidRequest", f"v1 {op} is not supported by Garage 2.x: use v2")
            if op in ("GetClusterHealth", "GetHealth"):
                return 200, self.health()
            if op in ("GetClusterStatus", "GetNodes"):
                return 200, self.status_view(v, me)
            if op == "GetNodeInfo":
                if q.get("node") not in ("self", me.id):
                    raise ApiError(400, "InvalidRequest", "only node=self is emulated")
                return 200, {"success": {me.id: {"nodeId": me.id, "garageVersion": "v2.0.0",
                                                 "rustVersion": "1.82.0", "dbEngine": "LMDB (using Heed crate)",
                                                 "garageFeatures": None}}, "error": {}}
            if op in ("ConnectClusterNodes", "AddNode"):
                return 200, [self._connect(me, peer) for peer in body]
            if op in ("GetClusterLayout", "GetLayout"):
                return 200, self.layout_view(v)
            if op == "GetClusterLayoutHistory":
                return 200, {"currentVersion": self.version, "minAck": self.history[self.active_from]["version"],
                             "versions": [{"version": h["version"],
                                           "status": "Current" if h is self.history[-1] else
                                           ("Draining" if k >= self.active_from else "Historical"),
                                           "storageNodes": sum(r["capacity"] is not None for r in h["roles"].values()),
                                           "gatewayNodes": sum(r["capacity"] is None for r in h["roles"].values())}
                                          for k, h in enumerate(self.history)]}
            if op in ("UpdateClusterLayout", "AddLayout"):
                changes = body if v == "v1" else (body.get("roles") or [])
                if v == "v2" and body.get("parameters") not in (None, {"zoneRedundancy": "maximum"}):
                    raise ApiError(400, "InvalidRequest", "only zoneRedundancy = maximum is emulated")
                for change in changes:
                    if len(change.get("id", "")) != 64:
                        raise ApiError(400, "InvalidRequest", "Invalid node identifier")
                for change in changes:
                    self.staged[change["id"]] = None if change.get("remove") else self._role(change)
                return 200, self.layout_view(v)
            if op == "PreviewClusterLayoutChanges":
                try:
                    new = self._compute(self._next_roles())
                except ApiError as exc:
                    return 200, {"error": exc.message.removeprefix("Internal error: ")}
                return 200, {"message": ["==== COMPUTATION OF A NEW PARTITION ASSIGNATION ===="],
                             "newLayout": self.layout_view(v, dict(new, version=self.version + 1), {})}
            if op in ("ApplyClusterLayout", "ApplyLayout"):
                message = self._apply(body.get("version"))
                return 200, {"message": message, "layout": self.layout_view(v)}
            if op in ("RevertClusterLayout", "RevertLayout"):  # v1's body (a version) is not read
                self.staged = {}
                return 200, self.layout_view(v)
        raise ApiError(400, "InvalidRequest", f"{op} is not emulated")

    def _connect(self, me: Node, peer: str) -> dict:
        node_id, _, addr = peer.partition("@")
        target = next((n for n in self.nodes if n.rpc_addr == addr), None)
        if target is None or not target.up:
            return {"success": False, "error": f"Could not connect to {addr}: connection refused"}
        if target.id != node_id:
            return {"success": False, "error": f"Handshake error: {addr} is node {target.id[:16]}, not {node_id[:16]}"}
        if target.secret != me.secret:
            return {"success": False, "error": "Handshake error: the remote node uses another rpc_secret"}
        if me.id in self.members:
            self.members.add(target.id)
        return {"success": True, "error": None}
