"""The backend interface of ``proxmox_vm``, and what both backends share.

A backend knows one cluster (the stub's simulation, or a real Proxmox VE API)
and offers the primitive operations the lifecycle in :mod:`.lifecycle` is
built from.  Each primitive is safe to repeat: the lifecycle may call it again
after a crash or a lost answer.

The *marker* makes a create idempotent across processes: the VM carries a tag
and a description line derived from the resource's ``name``, so a create
retried after its answer was lost finds (and adopts) the VM it cloned instead
of cloning a second one, and read/delete never touch a VM that merely reuses
the vmid of one that is gone.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

__all__ = ["Backend", "Marker", "VmRef", "VmSpec", "VmState", "GIB", "sha256"]

GIB = 1024**3


def sha256(data: bytes):
    """hashlib.sha256 without hashlib's OpenSSL import when CPython has its builtin.

    The standard library's own ``random`` module does the same; importing
    hashlib costs a noticeable share of a provider process's start.
    """
    try:
        from _sha256 import sha256 as builtin  # CPython up to 3.11
    except ImportError:
        from hashlib import sha256 as builtin
    return builtin(data)


class Marker(NamedTuple):
    """The tag and description line that say "this VM belongs to resource ``name``"."""

    name: str

    @property
    def tag(self) -> str:
        # Proxmox tags: lower case letters, digits, '-', '_', '+', '.'.
        return "fdp-" + sha256(self.name.encode()).hexdigest()[:12]

    @property
    def description(self) -> str:
        return f"Managed by fediversity-providers (proxmox_vm {self.name!r}); marker {self.tag}"

    def carried_by(self, tags: str | None, description: str | None) -> bool:
        """Whether a VM with these ``tags`` (Proxmox's ';'-separated list) or description is ours."""
        tag_list = [t.strip() for t in (tags or "").replace(",", ";").replace(" ", ";").split(";")]
        return self.tag in tag_list or f"marker {self.tag}" in (description or "")


class VmRef(NamedTuple):
    """Where a VM is: its id and the node it runs on."""

    vmid: int
    node: str


class VmSpec(NamedTuple):
    """The configuration the inputs ask for (everything but the disk size and power state)."""

    name: str
    cores: int
    memory_mib: int
    bridge: str
    ci_user: str | None
    ssh_keys: tuple[str, ...]
    ip_config: Any  # "dhcp" or {"address": "a.b.c.d/nn", "gateway": str | None}
    marker: Marker

    @classmethod
    def from_inputs(cls, inputs: dict[str, Any]) -> "VmSpec":
        return cls(
            name=inputs["name"],
            cores=inputs.get("cores", 2),
            memory_mib=inputs.get("memoryMiB", 2048),
            bridge=inputs.get("bridge", "vmbr0"),
            ci_user=inputs.get("cloudInitUser"),
            ssh_keys=tuple(inputs.get("sshAuthorizedKeys", ())),
            ip_config=inputs.get("ipConfig", "dhcp"),
            marker=Marker(inputs["name"]),
        )

    @property
    def ipconfig0(self) -> str:
        """The ``ipconfig0`` value Proxmox VE understands."""
        if self.ip_config == "dhcp":
            return "ip=dhcp"
        gateway = self.ip_config.get("gateway")
        return f"ip={self.ip_config['address']}" + (f",gw={gateway}" if gateway else "")

    @property
    def static_address(self) -> str | None:
        """The address without prefix when configured statically, else None."""
        if isinstance(self.ip_config, dict):
            return self.ip_config["address"].split("/")[0]
        return None


class VmState(NamedTuple):
    """A VM as the cluster reports it now."""

    ref: VmRef
    name: str
    running: bool
    mac_address: str
    ipv4_address: str | None
    cores: int
    memory_mib: int
    disk_gib: int
    pending_reboot: bool


class Backend(Protocol):
    """What the ``proxmox_vm`` lifecycle needs from a cluster.

    Errors are the core's kinds: :class:`NotFound` for a VM or template that
    does not exist, :class:`InvalidInput` for a request the cluster refuses
    as wrong (a disk shrink, an unknown node), :class:`Transient` /
    :class:`Unreachable` when trying again may help.
    """

    #: "stub" or "api", reported as the ``backend`` output.
    kind: str

    def find(self, marker: Marker) -> VmRef | None:
        """The VM carrying ``marker``, or None."""

    def clone(self, template: str, node: str, spec: VmSpec, *, full: bool, storage: str | None) -> VmRef:
        """Clone ``template`` (vmid or name) into a new VM on ``node`` with the next free vmid,
        named ``spec.name`` and carrying ``spec.marker``."""

    def configure(self, ref: VmRef, spec: VmSpec) -> None:
        """Set cores, memory, network, guest agent, cloud-init and marker."""

    def resize(self, ref: VmRef, disk_gib: int) -> None:
        """Grow the boot disk to ``disk_gib``; a shrink is refused with InvalidInput."""

    def start(self, ref: VmRef) -> None:
        """Start the VM; nothing when it runs."""

    def stop(self, ref: VmRef) -> None:
        """Stop the VM (hard stop); nothing when it is stopped."""

    def status(self, ref: VmRef, marker: Marker, *, wait_agent: float = 0.0) -> VmState:
        """The VM as it is now; NotFound (naming it) when gone or no longer carrying ``marker``.
        ``wait_agent`` seconds are spent waiting for the guest agent's address when it runs."""

    def delete(self, ref: VmRef, marker: Marker) -> None:
        """Stop and destroy the VM with its disks; a VM already gone (or not ours) is success."""
