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

__all__ = ["Backend", "Marker", "VmRef", "VmSpec", "VmState", "GIB", "sha256", "creation_token", "taken"]

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


#: The inputs the creation token is derived from, with their defaults (what the create makes).
TOKEN_INPUTS = {"name": None, "node": "pve", "template": None, "fullClone": True, "storage": None, "cores": 2,
                "memoryMiB": 2048, "diskGiB": 8, "bridge": "vmbr0", "cloudInitUser": None,
                "sshAuthorizedKeys": [], "ipConfig": "dhcp", "started": True}


def creation_token(inputs: dict[str, Any]) -> str:
    """12 hex digits derived from a create's inputs: the same when NixOps4 sends that create again.

    It tells "the VM an earlier attempt of this very create cloned" (adopted
    without asking) from "a VM someone else made under this name" (refused
    unless ``adoptExisting``).  Two resources with exactly the same inputs are
    one declaration to this provider: nothing else in a create request can
    tell them apart.
    """
    import json

    what = {key: inputs.get(key, default) for key, default in TOKEN_INPUTS.items()}
    what["cluster"] = (inputs.get("api") or {}).get("url")
    return sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


class Marker(NamedTuple):
    """The tag and description line that say "this VM belongs to resource ``name``".

    ``token`` (the creation token, when known) goes in the description too:
    ``made_by`` checks it.
    """

    name: str
    token: str | None = None

    @property
    def tag(self) -> str:
        # Proxmox tags: lower case letters, digits, '-', '_', '+', '.'.
        return "fdp-" + sha256(self.name.encode()).hexdigest()[:12]

    @property
    def description(self) -> str:
        made = f"; creation {self.token}" if self.token else ""
        return f"Managed by fediversity-providers (proxmox_vm {self.name!r}); marker {self.tag}{made}"

    def made_by(self, description: str | None) -> bool:
        """Whether the VM was made by the create with this marker's creation token."""
        return bool(self.token) and f"; creation {self.token}" in (description or "")

    def carried_by(self, tags: str | None, description: str | None) -> bool:
        """Whether a VM with these ``tags`` (Proxmox's ';'-separated list) or description is ours."""
        tag_list = [t.strip() for t in (tags or "").replace(",", ";").replace(" ", ";").split(";")]
        return self.tag in tag_list or f"marker {self.tag}" in (description or "")


def taken(vmid: int, node: str, name: str) -> "Exception":
    """The Conflict of a create that finds a VM it did not make under its name."""
    from fediversity_providers import Conflict

    return Conflict(f"VM {vmid} on node {node!r} already has the name {name!r}, and this create did not make it",
                    field="name", hint="set adoptExisting = true to take that VM over, or choose another name; "
                                       "nothing was changed")


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
    def from_inputs(cls, inputs: dict[str, Any], token: str | None = None) -> "VmSpec":
        return cls(
            name=inputs["name"],
            cores=inputs.get("cores", 2),
            memory_mib=inputs.get("memoryMiB", 2048),
            bridge=inputs.get("bridge", "vmbr0"),
            ci_user=inputs.get("cloudInitUser"),
            ssh_keys=tuple(inputs.get("sshAuthorizedKeys", ())),
            ip_config=inputs.get("ipConfig", "dhcp"),
            marker=Marker(inputs["name"], token or creation_token(inputs)),
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

    def claim(self, template: str, node: str, spec: VmSpec, *, full: bool, storage: str | None,
              adopt: bool) -> tuple[VmRef, str]:
        """The VM a create works on, and how it was had: "cloned", "retry" (made by an earlier
        attempt of this create: ``spec.marker.made_by``) or "adopted" (another VM with this name or
        marker, taken over because ``adopt``).  Without ``adopt``, such a VM is a Conflict."""

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
