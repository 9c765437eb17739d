"""The emulated Garage cluster behaves as Garage's layout code does, and answers as its documents say.

Each test drives the emulator through the admin client over HTTP, on both
API versions; the ``garage_cluster`` fixture fails a test whose traffic
leaves Garage's v1 or v2 document.
"""

from __future__ import annotations

import pytest

from fediversity_providers.providers.garage_bucket import admin
from fediversity_providers.providers.garage_bucket.admin import Lost
from fediversity_providers.providers.garage_bucket.testing.cluster import GarageCluster
from fediversity_providers.providers.garage_cluster.layoutapi import Layout

GB = 10**9


def api(target, node=None) -> Layout:
    endpoint = (node or target.nodes[0]).endpoint
    return Layout(admin.connect(endpoint, target.cluster.token, target.api_version, retry_timeout=1))


def join(target, count=None) -> Layout:
    a = api(target)
    results = a.connect([f"{n.id}@{n.rpc_addr}" for n in target.nodes[1:count]])
    assert all(r["success"] for r in results), results
    return a


def spread(a: Layout, nodes, zones=None) -> dict:
    return a.stage({n.id: {"zone": (zones or {}).get(n.id, f"z{i}"), "capacity": GB, "tags": []}
                    for i, n in enumerate(nodes)})


def test_connect_finds_the_node_by_id_address_and_secret(garage_cluster):
    a = api(garage_cluster)
    c = garage_cluster.cluster
    stranger = c.add_node(secret="another-secret")
    down = c.nodes[3]
    c.down(down)
    one, two = c.nodes[1], c.nodes[2]
    results = a.connect([f"{one.id}@{one.rpc_addr}", f"{one.id}@{two.rpc_addr}", f"{down.id}@{down.rpc_addr}",
                         f"{stranger.id}@{stranger.rpc_addr}", f"{two.id}@10.9.9.9:3901"])
    assert [r["success"] for r in results] == [True, False, False, False, False]
    assert "Handshake" in results[1]["error"] and "refused" in results[2]["error"]
    assert "rpc_secret" in results[3]["error"]
    ids = {n["id"]: n for n in a.status()["nodes"]}
    assert set(ids) == {c.nodes[0].id, one.id}
    assert ids[one.id]["addr"] == one.rpc_addr and ids[one.id]["isUp"]


def test_staging_replaces_and_hides_changes_equal_to_the_layout(garage_cluster):
    a = join(garage_cluster, 4)
    n = garage_cluster.nodes
    spread(a, n[:3])
    layout = a.stage({n[0].id: {"zone": "other", "capacity": 5, "tags": ["x"]}})
    assert layout["staged"][n[0].id] == {"zone": "other", "capacity": 5, "tags": ["x"]}
    assert len(layout["staged"]) == 3 and layout["version"] == 0
    spread(a, n[:3])
    assert a.apply(1)["version"] == 1
    layout = a.stage({n[1].id: {"zone": "z1", "capacity": GB, "tags": []}})  # the same as now
    assert layout["staged"] == {}
    layout = a.stage({n[1].id: None})
    assert layout["staged"] == {n[1].id: None}
    assert a.revert(1)["staged"] == {} and a.layout()["version"] == 1


def test_apply_must_name_the_next_version(garage_cluster):
    a = join(garage_cluster, 4)
    spread(a, garage_cluster.nodes[:3])
    for wrong in (0, 2, 5):
        with pytest.raises(Lost, match="Invalid new layout version"):
            a.apply(wrong)
    layout = a.layout()
    assert layout["version"] == 0 and len(layout["staged"]) == 3
    assert a.apply(1)["version"] == 1
    with pytest.raises(Lost, match="Invalid new layout version"):
        a.apply(1)  # the same version twice: refused, as Garage's version check does
    assert garage_cluster.cluster.applied == [1]


def test_too_few_storage_nodes_cannot_be_applied(garage_cluster):
    a = join(garage_cluster, 4)
    n = garage_cluster.nodes
    a.stage({n[0].id: {"zone": "a", "capacity": GB, "tags": []}, n[1].id: {"zone": "b", "capacity": None, "tags": []}})
    with pytest.raises(Lost, match="smaller than the replication factor"):
        a.apply(1)
    assert a.layout()["version"] == 0
    preview = a.preview()
    if garage_cluster.api_version == "v2":
        assert "smaller than the replication factor" in preview["error"]
    else:
        assert preview is None  # v1 has no preview


def test_health_follows_the_layout_and_the_nodes_that_are_up(garage_cluster):
    c = garage_cluster.cluster
    a = join(garage_cluster, 4)
    assert a.health()["status"] == "unavailable"  # no layout yet: no partition has a quorum
    spread(a, c.nodes[:3])
    a.apply(1)
    h = a.health()
    assert h == {"status": "healthy", "knownNodes": 4, "connectedNodes": 4, "storageNodes": 3, "storageNodesOk": 3,
                 "partitions": 256, "partitionsQuorum": 256, "partitionsAllOk": 256}
    c.down(c.nodes[1])
    h = a.health()
    assert (h["status"], h["storageNodesOk"], h["partitionsQuorum"], h["partitionsAllOk"]) == ("degraded", 2, 256, 0)
    c.down(c.nodes[2])  # two of three copies gone: below the write quorum of 2
    h = a.health()
    assert (h["status"], h["partitionsQuorum"]) == ("unavailable", 0)
    c.up(c.nodes[1]), c.up(c.nodes[2])
    assert a.health()["status"] == "healthy"


def test_copies_go_to_distinct_zones_and_an_old_version_drains(garage_cluster):
    c = garage_cluster.cluster
    a = join(garage_cluster, 4)
    n = c.nodes
    spread(a, n[:4], zones={n[3].id: "z0"})  # two nodes in z0
    a.apply(1)
    for chosen in c.history[-1]["assignment"]:
        assert len(set(chosen)) == 3 and len({c.roles[i]["zone"] for i in chosen}) == 3
    roles = {r["id"]: r for r in c.layout_view("v2")["roles"]}
    assert sum(r["storedPartitions"] for r in roles.values()) == 256 * 3
    c.down(n[2])
    a.stage({n[3].id: None})
    a.apply(2)
    status = {s["id"]: s for s in a.status()["nodes"]}
    assert status[n[3].id]["draining"] and status[n[3].id]["role"] is None
    assert a.health()["storageNodes"] == 4  # the draining version still counts
    c.up(n[2])
    assert a.health()["storageNodes"] == 3 and not {s["id"]: s for s in a.status()["nodes"]}[n[3].id]["draining"]


def test_a_node_that_is_down_answers_nothing(garage_cluster):
    c = garage_cluster.cluster
    c.down(c.nodes[0])
    with pytest.raises(Exception, match="no answer"):
        api(garage_cluster).status()


def test_a_lost_apply_answer_still_applied(garage_cluster):
    c = garage_cluster.cluster
    a = join(garage_cluster, 4)
    spread(a, c.nodes[:3])
    c.nodes[0].emulator.fault("lost", "ApplyClusterLayout" if garage_cluster.api_version == "v2" else "ApplyLayout")
    with pytest.raises(Lost):
        a.apply(1)
    assert a.layout()["version"] == 1 and c.applied == [1]


def test_before_runs_a_concurrent_change(garage_cluster):
    c = garage_cluster.cluster
    a = join(garage_cluster, 4)
    spread(a, c.nodes[:3])
    op = "ApplyClusterLayout" if garage_cluster.api_version == "v2" else "ApplyLayout"
    c.before(op, c.apply)  # someone else applies first: our version is stale
    with pytest.raises(Lost, match="Invalid new layout version"):
        a.apply(1)
    assert c.version == 1 and c.applied == [1]


def test_garage_2_refuses_v1_layout_calls(tmp_path):
    c = GarageCluster(3, garage_version=2)
    try:
        a = Layout(admin.connect(c.endpoint, c.token, "v1", retry_timeout=1))
        with pytest.raises(admin.AdminError, match="not supported by Garage 2.x"):
            a.layout()
    finally:
        c.close()
    assert not c.violations


def test_the_v2_node_says_its_own_id(tmp_path):
    c = GarageCluster(2, garage_version=2)
    try:
        for node in c.nodes:
            assert Layout(admin.connect(node.endpoint, c.token, "v2")).self_id() == node.id
    finally:
        c.close()
    assert not c.violations
