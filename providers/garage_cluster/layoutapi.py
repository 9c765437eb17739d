"""Garage's cluster and layout operations, v1 (Garage 1.x) and v2 (Garage 2.x) behind one interface.

Built on garage_bucket's admin client (:mod:`..garage_bucket.admin`: its
transport, bounded retries and answer checks), with the calls that client
does not make.  Answers are normalised to one shape and checked, since they
come from outside:

- status: ``{"layoutVersion", "nodes": [{"id", "addr", "hostname", "isUp", "draining", "role"}]}``;
- layout: ``{"version", "roles": {id: role}, "staged": {id: role or None}}``,
  a role being ``{"zone", "capacity", "tags"}`` (capacity None: a gateway);
- health: the document's eight fields.

``apply`` and ``revert`` are not idempotent (``Lost`` when the answer is
lost): the caller looks at the layout before sending them again.
"""

from __future__ import annotations

from typing import Any

from fediversity_providers.providers.garage_bucket.admin import AdminClient, _Answer

__all__ = ["Layout", "HEALTH_FIELDS"]

HEALTH_FIELDS = ("knownNodes", "connectedNodes", "storageNodes", "storageNodesOk", "partitions",
                 "partitionsQuorum", "partitionsAllOk")


class Layout:
    """The cluster and layout calls on one admin client."""

    def __init__(self, client: AdminClient) -> None:
        self.c = client
        self.v2 = client.version == "v2"

    def _call(self, op1: str, op2: str, method1: str, path1: str, query=None, body=None, **kw) -> Any:
        if self.v2:
            method = "GET" if op2.startswith("Get") else "POST"
            return self.c.t.call(op2, method, f"/v2/{op2}", query, body, **kw)
        return self.c.t.call(op1, method1, path1, query, body, **kw)

    # -- checking answers ---------------------------------------------------------------------
    def _role(self, a: _Answer, value: Any, where: str) -> dict:
        value = a.obj(value, where)
        capacity = a.count(value.get("capacity"), f"{where}.capacity")
        tags = [a.text(t, f"{where}.tags[{i}]", empty=True) for i, t in enumerate(a.items(value.get("tags"), f"{where}.tags"))]
        return {"zone": a.text(value.get("zone"), f"{where}.zone", empty=True), "capacity": capacity, "tags": tags}

    def _layout(self, value: Any, operation: str) -> dict:
        a = _Answer(self.c.t.remote, operation)
        value = a.obj(value, "the answer")
        version = a.count(value.get("version"), "version")
        if version is None:
            raise a.wrong("version", "missing", value.get("version"))
        roles = {}
        for i, r in enumerate(a.items(value.get("roles"), "roles", required=True)):
            r = a.obj(r, f"roles[{i}]")
            roles[a.text(r.get("id"), f"roles[{i}].id")] = self._role(a, r, f"roles[{i}]")
        staged: dict[str, dict | None] = {}
        for i, r in enumerate(a.items(value.get("stagedRoleChanges"), "stagedRoleChanges")):
            r = a.obj(r, f"stagedRoleChanges[{i}]")
            node = a.text(r.get("id"), f"stagedRoleChanges[{i}].id")
            staged[node] = None if a.flag(r.get("remove"), f"stagedRoleChanges[{i}].remove") else \
                self._role(a, r, f"stagedRoleChanges[{i}]")
        return {"version": version, "roles": roles, "staged": staged}

    # -- operations ----------------------------------------------------------------------------
    def status(self) -> dict:
        op = "GetClusterStatus" if self.v2 else "GetNodes"
        a = _Answer(self.c.t.remote, op)
        value = a.obj(self._call("GetNodes", "GetClusterStatus", "GET", "/v1/status"), "the answer")
        nodes = []
        for i, n in enumerate(a.items(value.get("nodes"), "nodes", required=True)):
            n = a.obj(n, f"nodes[{i}]")
            addr, host = n.get("addr"), n.get("hostname")
            nodes.append({
                "id": a.text(n.get("id"), f"nodes[{i}].id"),
                "addr": None if addr is None else a.text(addr, f"nodes[{i}].addr"),
                "hostname": None if host is None else a.text(host, f"nodes[{i}].hostname", empty=True),
                "isUp": a.flag(n.get("isUp"), f"nodes[{i}].isUp"),
                "draining": a.flag(n.get("draining"), f"nodes[{i}].draining"),
                "role": None if n.get("role") is None else self._role(a, n["role"], f"nodes[{i}].role"),
            })
        version = a.count(value.get("layoutVersion"), "layoutVersion")
        return {"layoutVersion": version or 0, "nodes": nodes, "self": value.get("node")}

    def self_id(self) -> str:
        """The id of the node answering (v2 GetNodeInfo?node=self, v1 /v1/status's ``node``)."""
        if not self.v2:
            node = self.status()["self"]
            return _Answer(self.c.t.remote, "GetNodes").text(node, "node")
        a = _Answer(self.c.t.remote, "GetNodeInfo")
        value = a.obj(self.c.t.call("GetNodeInfo", "GET", "/v2/GetNodeInfo", {"node": "self"}), "the answer")
        found = list(a.obj(value.get("success"), "success").values())
        if len(found) != 1:
            raise a.wrong("success", "not exactly one node", found)
        return a.text(a.obj(found[0], "success.*").get("nodeId"), "success.*.nodeId")

    def health(self) -> dict:
        op = "GetClusterHealth" if self.v2 else "GetHealth"
        a = _Answer(self.c.t.remote, op)
        value = a.obj(self._call("GetHealth", "GetClusterHealth", "GET", "/v1/health"), "the answer")
        out = {"status": a.text(value.get("status"), "status")}
        for field in HEALTH_FIELDS:
            out[field] = a.count(value.get(field), field) or 0
        return out

    def connect(self, peers: list[str]) -> list[dict]:
        """``[{"success", "error"}]``, one per ``<id>@<addr>``; connecting again is harmless."""
        op = "ConnectClusterNodes" if self.v2 else "AddNode"
        a = _Answer(self.c.t.remote, op)
        value = a.items(self._call("AddNode", "ConnectClusterNodes", "POST", "/v1/connect", None, peers),
                        "the answer", required=True)
        if len(value) != len(peers):
            raise a.wrong("the answer", f"not {len(peers)} results", value)
        return [{"success": a.flag(a.obj(r, f"[{i}]").get("success"), f"[{i}].success"),
                 "error": r.get("error")} for i, r in enumerate(value)]

    def layout(self) -> dict:
        return self._layout(self._call("GetLayout", "GetClusterLayout", "GET", "/v1/layout"),
                            "GetClusterLayout" if self.v2 else "GetLayout")

    def stage(self, changes: dict[str, dict | None]) -> dict:
        """Stage roles (``{id: role}``) and removals (``{id: None}``); the layout as it is then."""
        items = [{"id": i, "remove": True} if r is None else
                 {"id": i, "zone": r["zone"], "capacity": r["capacity"], "tags": list(r["tags"])}
                 for i, r in sorted(changes.items())]
        body: Any = {"roles": items} if self.v2 else items
        return self._layout(self._call("AddLayout", "UpdateClusterLayout", "POST", "/v1/layout", None, body),
                            "UpdateClusterLayout" if self.v2 else "AddLayout")

    def preview(self) -> dict | None:
        """v2's PreviewClusterLayoutChanges: ``{"error": message}`` or ``{"layout": …}``; None on v1."""
        if not self.v2:
            return None
        a = _Answer(self.c.t.remote, "PreviewClusterLayoutChanges")
        value = a.obj(self.c.t.call("PreviewClusterLayoutChanges", "POST", "/v2/PreviewClusterLayoutChanges"),
                      "the answer")
        if "error" in value:
            return {"error": a.text(value["error"], "error", empty=True)}
        return {"layout": self._layout(value.get("newLayout"), "PreviewClusterLayoutChanges")}

    def apply(self, version: int) -> dict:
        """Apply the staged changes as ``version`` (current + 1, or Garage refuses); the new layout."""
        op = "ApplyClusterLayout" if self.v2 else "ApplyLayout"
        value = self._call("ApplyLayout", "ApplyClusterLayout", "POST", "/v1/layout/apply", None,
                           {"version": version}, idempotent=False)
        a = _Answer(self.c.t.remote, op)
        return self._layout(a.obj(value, "the answer").get("layout"), op)

    def revert(self, current: int) -> dict:
        """Clear the staged changes (v1's body names version current + 1, as its document asks)."""
        if self.v2:
            value = self.c.t.call("RevertClusterLayout", "POST", "/v2/RevertClusterLayout", idempotent=False)
            return self._layout(value, "RevertClusterLayout")
        value = self.c.t.call("RevertLayout", "POST", "/v1/layout/revert", None, {"version": current + 1},
                              idempotent=False)
        return self._layout(value, "RevertLayout")
