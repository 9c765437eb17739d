"""garage_cluster: the layout of a multi-node Garage cluster, applied as one version and kept healthy.

The nodes are named by what an operator knows (an RPC address, or the
machine's ``ssh`` object); the resource finds their node ids, connects the
ones the cluster does not know, stages their roles (zone, capacity, tags),
refuses what would lose data before anything is staged, applies the change
as the next layout version and waits until the cluster reports itself
healthy.  This module imports only the core's public API: the work lives in
:mod:`.provider`, imported when a request comes.
"""

from __future__ import annotations

from fediversity_providers import ResourceType, hookimpl


class GarageCluster(ResourceType):
    name = "garage_cluster"
    requires_state = True

    def create(self, inputs, ctx):
        from . import provider

        return provider.converge(inputs, None, ctx)

    def read(self, resource, ctx):
        from . import provider

        return provider.read(resource, ctx)

    def update(self, resource, inputs, ctx):
        from . import provider

        return provider.converge(inputs, resource, ctx)

    def delete(self, resource, ctx):
        """Forget the cluster: its layout, nodes and data stay as they are."""
        ctx.progress("forgetting", "the cluster's layout is left as it is")


@hookimpl
def register_resource_types(register):
    register(GarageCluster())
