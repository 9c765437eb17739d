"""garage_bucket: a bucket on a Garage cluster, its access keys, permissions and settings.

The admin API (v1 for Garage 1.x, v2 for 2.x) creates the bucket and keys and
sets permissions, quotas and website; S3 (through the minio client) sets CORS
and lifecycle and empties a bucket on a forced delete.  This module imports
only the core's public API: the work lives in :mod:`.provider`, imported when
a request comes.
"""

from __future__ import annotations

from fediversity_providers import ResourceType, hookimpl


class GarageBucket(ResourceType):
    name = "garage_bucket"
    requires_state = True

    def create(self, inputs, ctx):
        from . import provider

        return provider.create(inputs, ctx)

    def read(self, resource, ctx):
        from . import provider

        return provider.read(resource, ctx)

    def update(self, resource, inputs, ctx):
        from . import provider

        return provider.update(resource, inputs, ctx)

    def delete(self, resource, ctx):
        from . import provider

        return provider.delete(resource, ctx)


@hookimpl
def register_resource_types(register):
    register(GarageBucket())
