"""garage_cluster against an emulated multi-node Garage (v1 on Garage 1.x, v2 on Garage 2.x).

Every request and answer is checked against Garage's documents (the
``garage_cluster`` fixture).  ``cluster.applied`` lists the layout versions
applied through the admin API, so a test sees a duplicate version at once;
``cluster.staged`` is what is staged.
"""

from __future__ import annotations

import pytest

from fediversity_providers import Conflict, InvalidInput, Unreachable
from fediversity_providers.testing import InProcessDriver, SubprocessDriver, conformance

T = "garage_cluster"
GB = 10**9


@pytest.fixture
def driver():
    with InProcessDriver() as d:
        yield d


def op(target, name: str) -> str:
    """The operationId of the target's API version."""
    v1 = {"ApplyClusterLayout": "ApplyLayout", "UpdateClusterLayout": "AddLayout",
          "RevertClusterLayout": "RevertLayout", "ConnectClusterNodes": "AddNode"}
    return v1.get(name, name) if target.api_version == "v1" else name


def untouched(target, version: int, staged: dict | None = None) -> None:
    """Nothing was staged or applied: the layout is at ``version`` with ``staged`` (default none) staged."""
    c = target.cluster
    assert c.version == version
    assert c.staged == (staged or {})
    assert target.cluster.count(op(target, "ApplyClusterLayout")) == 0


# -- the lifecycle ------------------------------------------------------------------------------
def test_conformance(garage_cluster, driver):
    c = garage_cluster.cluster
    steps = conformance.check(driver, T, garage_cluster.spread(3), garage_cluster.spread(4), delete_forgets=True)
    assert "read after delete still observes it" in steps
    assert c.applied == [1, 2]  # the create, then the update; re-apply and delete change nothing
    assert len(c.roles) == 4 and c.staged == {}


def test_conformance_over_the_wire(garage_cluster):
    driver = SubprocessDriver()
    try:
        g = garage_cluster
        bigger = g.inputs([g.node_input(n, f"zone-{i + 1}", 2 * GB) for i, n in enumerate(g.nodes[:3])])
        conformance.check(driver, T, g.spread(3), bigger, delete_forgets=True)
        assert g.cluster.applied == [1, 2]
    finally:
        assert driver.close() == 0


def test_invalid_inputs_are_refused(tmp_path):
    valid = {"adminEndpoint": "http://127.0.0.1:9", "adminTokenFile": str(tmp_path / "t"),
             "nodes": [{"rpcAddress": "10.0.0.1:3901", "zone": "a", "capacity": GB}]}
    assert conformance.check_invalid_inputs(InProcessDriver(), T, valid, max_examples=25) > 0


def test_three_nodes_in_three_zones_apply_as_one_version(garage_cluster, driver):
    c = garage_cluster.cluster
    out = driver.create(T, garage_cluster.spread(3))
    assert c.applied == [1] and out["layoutVersion"] == 1
    assert [n["id"] for n in out["nodes"]] == [n.id for n in c.nodes[:3]]
    assert [n["role"]["zone"] for n in out["nodes"]] == ["zone-1", "zone-2", "zone-3"]
    assert all(n["isUp"] and not n["draining"] for n in out["nodes"])
    assert out["health"]["status"] == "healthy" and out["health"]["storageNodes"] == 3
    assert out["drift"] == [] and out["apiVersion"] == garage_cluster.api_version


def test_grow_to_four_then_remove_one_applies_one_version_each(garage_cluster, driver):
    c, g = garage_cluster.cluster, garage_cluster
    three = g.spread(3)
    out = driver.create(T, three)
    four = g.spread(4)
    out = driver.update(T, three, out, four)
    assert c.applied == [1, 2] and len(out["nodes"]) == 4
    # remove the second node: the fourth keeps zone-4, three zones remain
    smaller = g.inputs([four["nodes"][0], four["nodes"][2], four["nodes"][3]])
    out = driver.update(T, four, out, smaller)
    assert c.applied == [1, 2, 3] and out["layoutVersion"] == 3
    assert c.nodes[1].id not in c.roles and len(c.roles) == 3
    assert out["health"]["status"] == "healthy"


def test_capacity_null_makes_a_gateway_and_tags_are_kept(garage_cluster, driver):
    g = garage_cluster
    nodes = [g.node_input(n, f"zone-{i + 1}", tags=["ssd", "dc=1"]) for i, n in enumerate(g.nodes[:3])]
    nodes.append(g.node_input(g.nodes[3], "zone-1", None))
    out = driver.create(T, g.inputs(nodes))
    assert out["nodes"][3]["role"] == {"zone": "zone-1", "capacity": None, "tags": []}
    assert out["nodes"][0]["role"]["tags"] == ["ssd", "dc=1"]
    assert out["health"]["storageNodes"] == 3


def test_nodes_named_by_their_machine(garage_cluster, driver):
    """An ``ssh`` object (as existing_vm outputs it) names the node by its host; the RPC port is rpcPort."""
    g = garage_cluster
    nodes = []
    for i, n in enumerate(g.nodes[:3]):
        host, port = n.rpc_addr.split(":")
        nodes.append({"ssh": {"host": host, "port": 22, "user": "root", "hostPublicKey": "ssh-ed25519 AAAA"},
                      "rpcPort": int(port), "adminEndpoint": n.endpoint, "zone": f"zone-{i + 1}", "capacity": GB})
    out = driver.create(T, g.inputs(nodes))
    assert [n["name"] for n in out["nodes"]] == [n.rpc_addr.split(":")[0] for n in g.nodes[:3]]
    assert [n["id"] for n in out["nodes"]] == [n.id for n in g.nodes[:3]]


def test_node_ids_come_from_the_cluster_status_once_connected(garage_cluster, driver):
    """Nodes the cluster already knows need no adminEndpoint."""
    g = garage_cluster
    g.cluster.members.update(n.id for n in g.nodes)  # connected already (bootstrap_peers)
    nodes = [{"rpcAddress": n.rpc_addr, "zone": f"zone-{i + 1}", "capacity": GB} for i, n in enumerate(g.nodes[:3])]
    out = driver.create(T, g.inputs(nodes))
    assert [n["id"] for n in out["nodes"]] == [n.id for n in g.nodes[:3]]
    assert g.cluster.count(op(g, "ConnectClusterNodes")) == 0


def test_delete_forgets_and_touches_nothing(garage_cluster, driver):
    g = garage_cluster
    out = driver.create(T, g.spread(3))
    before = sum(len(n.emulator.requests) for n in g.nodes)
    driver.delete(T, g.spread(3), out)
    assert sum(len(n.emulator.requests) for n in g.nodes) == before
    assert g.cluster.version == 1 and len(g.cluster.roles) == 3


# -- refusals: nothing staged -------------------------------------------------------------------
def test_fewer_zones_than_the_replication_factor_is_refused(garage_cluster, driver):
    g = garage_cluster
    nodes = [g.node_input(n, zone) for n, zone in zip(g.nodes, ["a", "b", "a", "b"])]
    with pytest.raises(InvalidInput, match=r"2 zone\(s\) \(a, b\), fewer than replicationFactor = 3.*nothing was staged"):
        driver.create(T, g.inputs(nodes))
    assert all(n.emulator.requests == [] for n in g.nodes)  # refused before any request
    untouched(g, 0)


def test_removing_too_many_storage_nodes_at_once_is_refused(garage_cluster, driver):
    g, c = garage_cluster, garage_cluster.cluster
    c.add_node()
    five = g.spread(5)
    out = driver.create(T, five)
    three = g.inputs(five["nodes"][:3])
    updates_before = c.count(op(g, "UpdateClusterLayout"))
    with pytest.raises(InvalidInput, match=r"takes 2 storage nodes out of the layout at once.*nothing was staged"):
        driver.update(T, five, out, three)
    assert c.count(op(g, "UpdateClusterLayout")) == updates_before
    assert c.version == 1 and c.staged == {} and c.applied == [1]
    # turning two storage nodes into gateways at once is the same
    gateways = g.inputs(five["nodes"][:3] + [dict(n, capacity=None) for n in five["nodes"][3:]])
    with pytest.raises(InvalidInput, match="takes 2 storage nodes"):
        driver.update(T, five, out, gateways)
    assert c.staged == {} and c.applied == [1]
    # one at a time is fine
    out = driver.update(T, five, out, g.inputs(five["nodes"][:4]))
    out = driver.update(T, g.inputs(five["nodes"][:4]), out, three)
    assert c.applied == [1, 2, 3]


def test_a_node_the_cluster_cannot_reach_is_refused(garage_cluster, driver):
    g, c = garage_cluster, garage_cluster.cluster
    stranger = c.add_node(secret="not-the-cluster-secret")
    nodes = [g.node_input(n, f"zone-{i + 1}") for i, n in enumerate(g.nodes[:2])] + [g.node_input(stranger, "zone-3")]
    with pytest.raises(Unreachable, match=r"cannot reach node 10\.0\.0\.5:3901 .*rpc_secret.*nothing was staged"):
        driver.create(T, g.inputs(nodes))
    untouched(g, 0)
    assert c.count(op(g, "UpdateClusterLayout")) == 0


def test_a_node_that_is_down_is_refused(garage_cluster, driver):
    g, c = garage_cluster, garage_cluster.cluster
    c.members.update(n.id for n in c.nodes)
    c.down(c.nodes[2])
    nodes = [{"rpcAddress": n.rpc_addr, "zone": f"zone-{i + 1}", "capacity": GB} for i, n in enumerate(c.nodes[:3])]
    with pytest.raises(Unreachable, match=r"cannot reach node 10\.0\.0\.3:3901.*nothing was staged"):
        driver.create(T, g.inputs(nodes))
    untouched(g, 0)


def test_a_node_unknown_to_the_cluster_without_admin_endpoint_is_refused(garage_cluster, driver):
    g = garage_cluster
    nodes = [g.node_input(n, f"zone-{i + 1}") for i, n in enumerate(g.nodes[:3])]
    nodes[2]["adminEndpoint"] = None
    with pytest.raises(Unreachable, match=r"nodes\[2\].*knows no node at 10\.0\.0\.3:3901.*adminEndpoint"):
        driver.create(T, g.inputs(nodes))
    untouched(g, 0)


def test_staged_changes_of_someone_else_are_refused_or_reverted(garage_cluster, driver):
    g, c = garage_cluster, garage_cluster.cluster
    c.members.update(n.id for n in c.nodes)
    theirs = {"zone": "elsewhere", "capacity": 7 * GB, "tags": ["manual"]}
    c.stage(c.nodes[3].id, theirs)
    with pytest.raises(Conflict, match=rf"staged changes that this resource did not make: node {c.nodes[3].id[:16]} "
                                       r"\(10\.0\.0\.4:3901\) → zone elsewhere, capacity 7000000000.*pendingChanges"):
        driver.create(T, g.spread(3))
    untouched(g, 0, {c.nodes[3].id: theirs})
    out = driver.create(T, g.spread(3, pendingChanges="revert"))
    assert c.applied == [1] and c.nodes[3].id not in c.roles and out["drift"] == []
    assert c.count(op(g, "RevertClusterLayout")) == 1


def test_a_layout_garage_cannot_compute_is_reverted(garage_cluster, driver):
    """v2 asks Garage to compute the layout first (PreviewClusterLayoutChanges) and applies nothing; v1 has no
    preview, so its apply fails: either way the staged changes are reverted and no version is applied."""
    g, c = garage_cluster, garage_cluster.cluster
    c.replication_factor = 4  # the nodes say 4, the inputs 3: Garage cannot place 4 copies on 3 nodes
    refused = r"The number of nodes with positive capacity \(3\) is smaller than the replication factor \(4\)"
    if g.api_version == "v2":
        with pytest.raises(InvalidInput, match=rf"cannot compute this layout: {refused}.*reverted, nothing was applied"):
            driver.create(T, g.spread(3, replicationFactor=3))
        untouched(g, 0)
    else:
        with pytest.raises(Exception, match=rf"{refused}.*the staged changes were reverted, nothing was applied"):
            driver.create(T, g.spread(3, replicationFactor=3, retryTimeout=0.3))
        assert c.version == 0 and c.staged == {} and c.applied == []


# -- faults ------------------------------------------------------------------------------------
def test_a_lost_apply_answer_is_looked_up_not_applied_twice(garage_cluster, driver):
    g, c = garage_cluster, garage_cluster.cluster
    c.nodes[0].emulator.fault("lost", op(g, "ApplyClusterLayout"))
    out = driver.create(T, g.spread(3))
    assert c.applied == [1] and out["layoutVersion"] == 1 and c.staged == {}
    assert c.count(op(g, "ApplyClusterLayout")) == 1


def test_a_5xx_to_apply_is_retried_once_looked_at(garage_cluster, driver):
    g, c = garage_cluster, garage_cluster.cluster
    c.nodes[0].emulator.fault("5xx", op(g, "ApplyClusterLayout"), times=2)
    out = driver.create(T, g.spread(3))
    assert c.applied == [1] and out["layoutVersion"] == 1
    assert c.count(op(g, "ApplyClusterLayout")) == 3


def test_a_lost_answer_to_a_retried_create_is_found_again(garage_cluster, driver):
    """NixOps4 sends the create again after the first one's answer was lost: no second version."""
    g, c = garage_cluster, garage_cluster.cluster
    first = driver.create(T, g.spread(3))
    again = driver.create(T, g.spread(3))
    assert c.applied == [1] and again == first


def test_a_node_down_during_apply_leaves_one_whole_version(garage_cluster, driver):
    g, c = garage_cluster, garage_cluster.cluster
    c.before(op(g, "ApplyClusterLayout"), lambda: c.down(c.nodes[2]))
    with pytest.raises(Unreachable, match=r"layout version 1 is applied, but the cluster is degraded: 2 of 3 storage "
                                          r"nodes up \(down: 10\.0\.0\.3:3901\).*not be changed a second time"):
        driver.create(T, g.spread(3, healthTimeout=0.3))
    assert c.applied == [1] and len(c.roles) == 3 and c.staged == {}  # the whole change, in one version
    c.up(c.nodes[2])
    out = driver.create(T, g.spread(3))
    assert c.applied == [1] and out["health"]["status"] == "healthy"


def test_a_concurrent_layout_change_is_not_overwritten(garage_cluster, driver):
    g, c = garage_cluster, garage_cluster.cluster

    def someone_else():  # stages a role of their own and applies, our staged changes with it
        c.stage(c.nodes[3].id, {"zone": "theirs", "capacity": GB, "tags": []})
        c.apply()

    c.before(op(g, "ApplyClusterLayout"), someone_else)
    c.applied.clear()
    with pytest.raises(Conflict, match=r"layout version 1 was applied by someone else.*applied nothing more"):
        driver.create(T, g.spread(3))
    assert c.version == 1 and c.applied == [1] and c.staged == {}
    assert c.count(op(g, "ApplyClusterLayout")) == 1  # ours was refused, and not sent again


# -- read reports drift ------------------------------------------------------------------------
def test_read_reports_drift(garage_cluster, driver):
    g, c = garage_cluster, garage_cluster.cluster
    inputs = g.spread(3)
    out = driver.create(T, inputs)
    assert driver.read(T, inputs, out) == out
    c.down(c.nodes[1])
    c.stage(c.nodes[2].id, {"zone": "zone-3", "capacity": 2 * GB, "tags": ["by-hand"]})
    c.apply()
    seen = driver.read(T, inputs, out)
    assert seen["layoutVersion"] == 2
    assert seen["nodes"][1]["isUp"] is False
    assert seen["nodes"][2]["role"] == {"zone": "zone-3", "capacity": 2 * GB, "tags": ["by-hand"]}
    assert seen["health"]["status"] == "degraded"
    drift = "\n".join(seen["drift"])
    assert "node 10.0.0.2:3901 is down" in drift
    assert "node 10.0.0.3:3901 has role (zone zone-3, capacity 2000000000, tags ['by-hand'])" in drift
    assert "layout version 2 is current, this resource last saw version 1" in drift
    c.up(c.nodes[1])
    back = driver.update(T, inputs, seen, inputs)  # the inputs again: the hand-made role goes back
    assert back["drift"] == [] and c.applied[-1] == 3 and back["nodes"][2]["role"]["tags"] == []


def test_how_many_storage_nodes_may_leave_at_once():
    """As docs/garage_cluster.md says: one for rf 1 to 3, two for 4 or 5, three for 6 or 7."""
    from fediversity_providers.providers.garage_cluster.plan import max_leaving, write_quorum

    assert [write_quorum(rf) for rf in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]
    assert [max_leaving(rf) for rf in range(1, 8)] == [1, 1, 1, 2, 2, 3, 3]
