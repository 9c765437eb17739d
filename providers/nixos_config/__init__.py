"""nixos_config: deploy a built NixOS system onto a machine over SSH.

Light on purpose: the work (ssh, nix copy, threads) lives in ``deploy`` and is
imported when a request needs it.  See docs/nixos_config.md.
"""

from __future__ import annotations

from fediversity_providers import Context, Resource, ResourceType, hookimpl


class NixosConfig(ResourceType):
    name = "nixos_config"
    requires_state = False
    #: One machine runs one system: a replacement (a new ``profile``) deletes
    #: the old deployment (onDelete) before it activates the new one.
    replacement_can_coexist = False

    def create(self, inputs: dict, ctx: Context) -> dict:
        from . import deploy

        return deploy.deploy(inputs, ctx)

    def update(self, resource: Resource, inputs: dict, ctx: Context) -> dict:
        from . import deploy

        return deploy.deploy(inputs, ctx, previous=resource)

    def read(self, resource: Resource, ctx: Context) -> dict:
        from . import deploy

        return deploy.read(resource.inputs, resource.outputs, ctx)

    def delete(self, resource: Resource, ctx: Context) -> None:
        from . import deploy

        deploy.delete(resource.inputs, ctx, outputs=resource.outputs)


@hookimpl
def register_resource_types(register):
    register(NixosConfig())
