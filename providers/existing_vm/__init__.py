"""existing_vm: a machine that already exists, reached over SSH with fabric.

Create and read connect with strict host-key checking against
``ssh.hostPublicKey`` only and gather the machine's facts; update does the
same with the new inputs; delete forgets the machine without touching it.

Only the core's API and light standard modules are imported here: fabric and
paramiko load in :mod:`.session` when the first existing_vm request arrives.
"""

from __future__ import annotations

from fediversity_providers import Context, Resource, ResourceType, hookimpl

__all__ = ["ExistingVM"]


class ExistingVM(ResourceType):
    name = "existing_vm"
    requires_state = False

    def create(self, inputs: dict, ctx: Context) -> dict:
        from .session import observe

        return observe(inputs, ctx)

    def read(self, resource: Resource, ctx: Context) -> dict:
        from .session import observe

        return observe(resource.inputs, ctx)

    def update(self, resource: Resource, inputs: dict, ctx: Context) -> dict:
        from .session import observe

        return observe(inputs, ctx)

    def delete(self, resource: Resource, ctx: Context) -> None:
        """Forget the machine: nothing on it is touched, no connection is made."""
        return None


@hookimpl
def register_resource_types(register):
    register(ExistingVM())
