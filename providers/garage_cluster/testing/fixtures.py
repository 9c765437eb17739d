"""The ``garage_cluster`` fixture: an emulated Garage cluster per admin API version.

Garage 1.x speaking v1 and Garage 2.x speaking v2, each with four nodes
started and none connected (a test adds more with ``add_node``).  Every
request and answer is checked against Garage's documents; a test whose
traffic leaves them fails at teardown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fediversity_providers.providers.garage_bucket.testing.cluster import GarageCluster, Node

__all__ = ["ClusterTarget", "garage_cluster"]

GIB = 10**9


class ClusterTarget:
    """An emulated cluster, its admin token file and API version, and inputs for garage_cluster."""

    def __init__(self, cluster: GarageCluster, token_file: Path, api_version: str) -> None:
        self.cluster, self.token_file, self.api_version = cluster, token_file, api_version

    @property
    def nodes(self) -> list[Node]:
        return self.cluster.nodes

    def node_input(self, node: Node, zone: str, capacity: int | None = GIB, **extra: Any) -> dict:
        entry = {"rpcAddress": node.rpc_addr, "adminEndpoint": node.endpoint, "zone": zone, "capacity": capacity}
        entry.update(extra)
        return entry

    def inputs(self, nodes: list[dict], **extra: Any) -> dict:
        inputs = {"adminEndpoint": self.cluster.endpoint, "adminTokenFile": str(self.token_file),
                  "adminApiVersion": self.api_version, "replicationFactor": self.cluster.replication_factor,
                  "nodes": nodes, "retryTimeout": 5, "healthTimeout": 5}
        inputs.update(extra)
        return inputs

    def spread(self, count: int, **extra: Any) -> dict:
        """Inputs laying the first ``count`` nodes out one per zone (zone-1, zone-2, …)."""
        return self.inputs([self.node_input(n, f"zone-{i + 1}") for i, n in enumerate(self.nodes[:count])], **extra)


@pytest.fixture(params=["v1", "v2"])
def garage_cluster(request, tmp_path):
    """An emulated Garage cluster of four nodes (rf 3): Garage 1.x on v1, Garage 2.x on v2."""
    cluster = GarageCluster(4, garage_version=1 if request.param == "v1" else 2)
    token_file = tmp_path / "garage-admin-token"
    token_file.write_text(cluster.token + "\n")
    try:
        yield ClusterTarget(cluster, token_file, request.param)
    finally:
        cluster.close()
    assert not cluster.violations, "admin API traffic outside the official documents:\n" + "\n".join(cluster.violations)
