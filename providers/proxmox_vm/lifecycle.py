"""The ``proxmox_vm`` lifecycle, built from a backend's primitives.

Imported by the resource type's methods only when a request arrives, so the
provider's cold start does not pay for it.
"""

from __future__ import annotations

from typing import Any

from fediversity_providers import Conflict, Context, InvalidInput, NeedsReplacement, NotFound

from .backend import Backend, Marker, VmRef, VmSpec, VmState

__all__ = ["open_backend", "create", "read", "update", "delete"]


def open_backend(inputs: dict[str, Any], ctx: Context) -> Backend:
    """The real API backend when ``api`` is set, else the stub."""
    api = inputs.get("api")
    timeout = float(inputs.get("taskTimeoutSeconds", 900))
    if api:
        from .pve import PveBackend

        return PveBackend.from_inputs(api, ctx, task_timeout=timeout)
    from .stub import StubBackend, check_state_dir

    state_dir = (inputs.get("stub") or {}).get("stateDir")
    return StubBackend(check_state_dir(state_dir) if state_dir else None, ctx)


def _backend_identity(inputs: dict[str, Any]) -> tuple:
    api = inputs.get("api")
    if api:
        return ("api", api["url"].rstrip("/").removesuffix("/api2/json"))
    from .stub import default_state_dir

    return ("stub", str((inputs.get("stub") or {}).get("stateDir") or default_state_dir()))


def _outputs(state: VmState, kind: str, token: str | None = None) -> dict[str, Any]:
    extra = {"creationToken": token} if token else {}
    return {
        **extra,
        "vmid": state.ref.vmid,
        "node": state.ref.node,
        "name": state.name,
        "status": "running" if state.running else "stopped",
        "ipv4Address": state.ipv4_address,
        "macAddress": state.mac_address,
        "cores": state.cores,
        "memoryMiB": state.memory_mib,
        "diskGiB": state.disk_gib,
        "pendingReboot": state.pending_reboot,
        "backend": kind,
    }


def _ref(outputs: dict[str, Any] | None, inputs: dict[str, Any]) -> VmRef | None:
    if not outputs or "vmid" not in outputs:
        return None
    return VmRef(int(outputs["vmid"]), outputs.get("node") or inputs.get("node", "pve"))


def _agent_wait(inputs: dict[str, Any], ctx: Context) -> float:
    wait = float(inputs.get("agentTimeoutSeconds", 300))
    remaining = ctx.remaining()
    return wait if remaining is None else min(wait, remaining)


def _converge(backend: Backend, ref: VmRef, spec: VmSpec, inputs: dict[str, Any], ctx: Context,
              current_disk: int | None, *, fresh: bool = False) -> None:
    disk = inputs.get("diskGiB", 8)
    if current_disk is not None and disk < current_disk:
        whose = f"template {inputs.get('template')!r}" if fresh else f"VM {ref.vmid}"
        raise InvalidInput(
            f"the disk of {whose} has {current_disk} GiB; disks can only grow, not shrink to {disk} GiB",
            field="diskGiB",
            hint=f"set diskGiB to {current_disk} or more" + ("" if fresh else ", or recreate the VM"),
        )
    ctx.progress("configuring", f"VM {ref.vmid} on {ref.node}")
    backend.configure(ref, spec)
    if current_disk is None or disk > current_disk:
        ctx.progress("resizing", f"boot disk to {disk} GiB")
        backend.resize(ref, disk)
    if inputs.get("started", True):
        ctx.progress("starting", f"VM {ref.vmid}")
        backend.start(ref)
    else:
        ctx.progress("stopping", f"VM {ref.vmid}")
        backend.stop(ref)


def create(inputs: dict[str, Any], ctx: Context) -> dict[str, Any]:
    backend = open_backend(inputs, ctx)
    spec = VmSpec.from_inputs(inputs)
    node = inputs.get("node", "pve")
    ctx.progress("claiming", f"the name {spec.name!r} on node {node}")
    ref, how = backend.claim(inputs["template"], node, spec, full=inputs.get("fullClone", True),
                             storage=inputs.get("storage"), adopt=bool(inputs.get("adoptExisting")))
    cloned = how == "cloned"
    if ref.node != node:
        raise Conflict(f"VM {ref.vmid} on node {ref.node!r} already has the name {spec.name!r}", field="name",
                       hint="choose another name, or delete that VM; nothing was changed")
    if how == "retry":
        ctx.progress("adopting", f"VM {ref.vmid} on {ref.node}, cloned by an earlier attempt of this create")
    elif how == "adopted":
        ctx.progress("adopting", f"VM {ref.vmid} on {ref.node} (adoptExisting)")
        backend.configure(ref, spec)  # it carries this resource's marker from now on
    try:
        current = backend.status(ref, spec.marker)
        _converge(backend, ref, spec, inputs, ctx, current.disk_gib, fresh=cloned)
        wait = _agent_wait(inputs, ctx) if inputs.get("started", True) else 0.0
        state = backend.status(ref, spec.marker, wait_agent=wait)
    except Exception:  # (not on SIGTERM/SIGINT: stop at once; the marker lets a retry adopt the VM)
        if cloned:  # leave no VM behind that no outputs will name
            ctx.progress("cleaning up", f"removing VM {ref.vmid} after the failed create")
            try:
                backend.delete(ref, spec.marker)
            except Exception as cleanup_error:  # the marker lets a retried create adopt it
                ctx.log("could not remove VM %s after the failed create (%s); a retried create adopts it",
                        ref.vmid, cleanup_error)
        raise
    return _outputs(state, backend.kind, spec.marker.token)


def read(inputs: dict[str, Any], outputs: dict[str, Any] | None, ctx: Context) -> dict[str, Any]:
    ref = _ref(outputs, inputs)
    if ref is None:
        raise NotFound(f"no VM recorded for {inputs.get('name')!r} (the outputs hold no vmid)")
    backend = open_backend(inputs, ctx)
    return _outputs(backend.status(ref, Marker(inputs["name"])), backend.kind, (outputs or {}).get("creationToken"))


def update(prev_inputs: dict[str, Any], prev_outputs: dict[str, Any] | None, inputs: dict[str, Any],
           ctx: Context) -> dict[str, Any]:
    if _backend_identity(prev_inputs) != _backend_identity(inputs):
        raise NeedsReplacement(
            "the VM would move to another cluster (api.url or stub.stateDir changed)",
            field="api" if inputs.get("api") or prev_inputs.get("api") else "stub.stateDir",
            hint="delete the resource and create it again",
        )
    ref = _ref(prev_outputs, prev_inputs)
    if ref is None:
        return create(inputs, ctx)
    backend = open_backend(inputs, ctx)
    token = (prev_outputs or {}).get("creationToken")
    spec = VmSpec.from_inputs(inputs, token)
    current = backend.status(ref, Marker(prev_inputs["name"]))
    was_running = current.running
    _converge(backend, ref, spec, inputs, ctx, current.disk_gib)
    wait = _agent_wait(inputs, ctx) if inputs.get("started", True) and not was_running else 0.0
    return _outputs(backend.status(ref, spec.marker, wait_agent=wait), backend.kind, token)


def delete(inputs: dict[str, Any], outputs: dict[str, Any] | None, ctx: Context) -> None:
    ref = _ref(outputs, inputs)
    if ref is None:
        return
    backend = open_backend(inputs, ctx)
    ctx.progress("deleting", f"VM {ref.vmid} on {ref.node}")
    backend.delete(ref, Marker(inputs["name"]))
