"""garage_cluster's test environment: an emulated multi-node Garage and its pytest fixtures.

The cluster itself is garage_bucket's emulator grown to several nodes
(:class:`~fediversity_providers.providers.garage_bucket.testing.cluster.GarageCluster`);
:mod:`.fixtures` (registered through the ``pytest11`` entry point
``fediversity_providers_garage_cluster``) serves it to tests as
``garage_cluster``, once per admin API version.
"""

from .fixtures import ClusterTarget

__all__ = ["ClusterTarget"]
