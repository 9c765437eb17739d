"""``proxmox_vm``: a Proxmox VE virtual machine cloned from a template.

Two backends sit behind one interface (:mod:`.backend`): the stub, a
simulated cluster kept in a local state directory (the default), and a real
Proxmox VE cluster reached through its API when the ``api`` input is set.
This module stays light: the lifecycle and the backends are imported inside
the methods, when a request needs them.
"""

from __future__ import annotations

from fediversity_providers import Context, Resource, ResourceType, hookimpl

__all__ = ["ProxmoxVM", "register_resource_types"]


class ProxmoxVM(ResourceType):
    name = "proxmox_vm"
    requires_state = True
    #: A VM is known by its name's marker (a retried create adopts it), so a
    #: replacement deletes the old VM before it clones the new one.
    replacement_can_coexist = False

    def create(self, inputs: dict, ctx: Context) -> dict:
        from .lifecycle import create

        return create(inputs, ctx)

    def read(self, resource: Resource, ctx: Context) -> dict:
        from .lifecycle import read

        return read(resource.inputs, resource.outputs, ctx)

    def update(self, resource: Resource, inputs: dict, ctx: Context) -> dict:
        from .lifecycle import update

        return update(resource.inputs, resource.outputs, inputs, ctx)

    def delete(self, resource: Resource, ctx: Context) -> None:
        from .lifecycle import delete

        delete(resource.inputs, resource.outputs, ctx)


@hookimpl
def register_resource_types(register) -> None:
    register(ProxmoxVM())
