"""The real backend: a Proxmox VE cluster through its HTTP API.

Create = ``/cluster/nextid`` + clone (retried with a new id when another
client took it), wait for the task, configure (cores, memory, net0, guest
agent, cloud-init, marker), grow the boot disk, start, wait for the guest
agent's address.  The VM carries the resource's marker from the clone on (in
its description; the tag follows at configure), so a create retried after a
lost answer adopts it instead of cloning again.
"""

from __future__ import annotations

import ipaddress
import re
import time
import urllib.parse
from typing import Any

from fediversity_providers import (
    Conflict,
    Context,
    InvalidInput,
    NotFound,
    ProtocolError,
    ProviderError,
    Transient,
)
from fediversity_providers.core.untrusted import printable

from .backend import GIB, Marker, VmRef, VmSpec, VmState, taken
from .client import PveClient

__all__ = ["PveBackend"]

CLONE_ATTEMPTS = 5
DISK_SLOTS = re.compile(r"^(scsi|virtio|sata|ide)\d+$")
UNITS = {"K": 1024, "M": 1024**2, "G": GIB, "T": 1024**4}
COLD_KEYS = ("cores", "memory", "ciuser", "sshkeys", "ipconfig0", "sockets", "cpu")


def _options(value: str) -> dict[str, str]:
    """``virtio=BC:24:11:..,bridge=vmbr0`` as a dict (a bare first item keys itself)."""
    result: dict[str, str] = {}
    for part in str(value).split(","):
        if "=" in part:
            key, _, item = part.partition("=")
            result[key.strip()] = item.strip()
        elif part:
            result[part.strip()] = ""
    return result


def _size_bytes(size: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", size.strip())
    if not match:
        return 0
    return int(float(match.group(1)) * UNITS.get(match.group(2), 1))


def _boot_disk(config: dict[str, Any]) -> tuple[str, int]:
    """The boot disk's slot and size in bytes: the first disk in the boot order, else the first disk."""
    def usable(key: str) -> bool:
        value = str(config.get(key, ""))
        return bool(DISK_SLOTS.match(key)) and bool(value) and "media=cdrom" not in value \
            and "cloudinit" not in value
    order = _options(config.get("boot", "")).get("order", "")
    candidates = [key for key in order.split(";") if usable(key)]
    candidates += sorted((key for key in config if usable(key)), key=lambda k: (k.rstrip("0123456789"), k))
    if not candidates:
        raise ProviderError("the VM has no disk to boot from (no scsiN/virtioN/sataN/ideN disk in its config)",
                            field="template", hint="use a template with a boot disk")
    slot = candidates[0]
    return slot, _size_bytes(_options(config[slot]).get("size", "0"))


def _mac(config: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """net0's model, MAC and options."""
    options = _options(config.get("net0", ""))
    for model, value in options.items():
        if re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", value):
            return model, value.upper(), options
    raise ProviderError("the VM has no network interface net0 with a MAC address", field="template",
                        hint="use a template with a network interface")


def _agent_enabled(config: dict[str, Any]) -> bool:
    first = str(config.get("agent", "0")).split(",")[0]
    return first.removeprefix("enabled=") in ("1", "on", "yes", "true")


def _memory(value: Any) -> int:
    if value is None:
        return 512
    return int(_options(str(value)).get("current", str(value).split(",")[0]))


class PveBackend:
    """:class:`~.backend.Backend` on a Proxmox VE cluster."""

    kind = "api"

    def __init__(self, client: PveClient, ctx: Context | None = None, *, task_timeout: float = 900.0) -> None:
        self.client = client
        self.ctx = ctx
        self.task_timeout = task_timeout

    @classmethod
    def from_inputs(cls, api: dict[str, Any], ctx: Context, *, task_timeout: float = 900.0) -> "PveBackend":
        from fediversity_providers.core.secretfile import read_secret_file

        secret = read_secret_file(api["tokenSecretFile"], field="api.tokenSecretFile").strip()
        ctx.add_secret(secret)
        client = PveClient(api["url"], api["tokenId"], secret, verify_tls=api.get("verifyTls", True),
                           ca_file=api.get("caFile"), log=lambda line: ctx.log("%s", line),
                           deadline=getattr(ctx, "deadline", None))
        return cls(client, ctx, task_timeout=task_timeout)

    # -- helpers ----------------------------------------------------------------

    def _progress(self, phase: str, message: str = "") -> None:
        if self.ctx is not None:
            self.ctx.progress(phase, message)

    def _vm_path(self, ref: VmRef) -> str:
        return f"/nodes/{ref.node}/qemu/{ref.vmid}"

    def _timeout(self) -> float:
        remaining = self.ctx.remaining() if self.ctx is not None else None
        return self.task_timeout if remaining is None else min(self.task_timeout, remaining)

    def _waiting(self, what: str, limit: float):
        """A heartbeat on stderr while a long wait lasts (nothing without a context)."""
        if self.ctx is None or not hasattr(self.ctx, "waiting"):
            import contextlib

            return contextlib.nullcontext()
        return self.ctx.waiting(what, limit)

    def _wait(self, upid: Any, what: str) -> None:
        timeout = self._timeout()
        with self._waiting(what, timeout):
            self.client.wait_task(upid, timeout, what=what)

    def _vms(self) -> list[dict[str, Any]]:
        return [r for r in self.client.get("/cluster/resources", type="vm") or [] if r.get("type") == "qemu"]

    def _config(self, ref: VmRef) -> dict[str, Any]:
        return self.client.get(self._vm_path(ref) + "/config") or {}

    def _gone(self, ref: VmRef, why: str) -> NotFound:
        return NotFound(f"VM {ref.vmid} on node {ref.node!r} {why}",
                        hint="it was deleted, or removed outside this provider; create the resource again for a new VM")

    def _wait_unlocked(self, ref: VmRef) -> None:
        deadline = time.monotonic() + self._timeout()
        while (lock := self._config(ref).get("lock")):
            if time.monotonic() > deadline:
                raise Transient(f"VM {ref.vmid} stayed locked ({lock})", hint="retry later")
            time.sleep(0.2)

    def _template(self, template: str) -> dict[str, Any]:
        vms = self._vms()
        if template.isdigit():
            found = [vm for vm in vms if int(vm["vmid"]) == int(template)]
        else:
            found = [vm for vm in vms if vm.get("name") == template and vm.get("template")]
        names = ", ".join(f"{vm['vmid']} ({vm.get('name')})" for vm in vms if vm.get("template")) or "none"
        if not found:
            raise NotFound(f"template {template!r} does not exist on the cluster", field="template",
                           hint=f"templates there: {names}")
        if len(found) > 1:
            raise Conflict(f"{len(found)} templates are named {template!r}", field="template",
                           hint="name the template by its vmid")
        if not found[0].get("template"):
            raise InvalidInput(f"VM {template} is not a template", field="template", hint=f"templates: {names}")
        return found[0]

    # -- the Backend interface --------------------------------------------------

    def find(self, marker: Marker) -> VmRef | None:
        for vm in self._vms():
            if vm.get("template"):
                continue
            if not (marker.carried_by(vm.get("tags"), None) or vm.get("name") == marker.name):
                continue
            ref = VmRef(int(vm["vmid"]), vm["node"])
            try:
                config = self._config(ref)
            except NotFound:
                continue
            if marker.carried_by(config.get("tags"), config.get("description")):
                return ref
        return None

    def claim(self, template: str, node: str, spec: VmSpec, *, full: bool, storage: str | None,
              adopt: bool) -> tuple[VmRef, str]:
        """Find, else clone; then make sure no other VM took the name meanwhile (the API has no
        cluster-wide lock: of two concurrent creates of one name, the VM with the lower vmid wins,
        and the other create removes its clone and reports a Conflict)."""
        named = self._named(spec)
        for ref, config in named:
            if spec.marker.made_by(config.get("description")):
                return ref, "retry"
        if named:
            if not adopt:
                raise taken(named[0][0].vmid, named[0][0].node, spec.name)
            return named[0][0], "adopted"
        ref = self.clone(template, node, spec, full=full, storage=storage)
        rivals = [other for other, config in self._named(spec) if other.vmid < ref.vmid
                  and not spec.marker.made_by(config.get("description"))]
        if rivals:
            self._progress("cleaning up", f"VM {ref.vmid}: VM {rivals[0].vmid} took the name {spec.name!r} first")
            self.delete(ref, spec.marker)
            raise taken(rivals[0].vmid, rivals[0].node, spec.name)
        return ref, "cloned"

    def _named(self, spec: VmSpec) -> list[tuple[VmRef, dict[str, Any]]]:
        """The VMs (not templates) with ``spec``'s name or marker, lowest vmid first, with their configs."""
        found = []
        for vm in sorted(self._vms(), key=lambda vm: int(vm["vmid"])):
            if vm.get("template") or not (vm.get("name") == spec.name or spec.marker.carried_by(vm.get("tags"), None)):
                continue
            ref = VmRef(int(vm["vmid"]), str(vm["node"]))
            try:
                found.append((ref, self._config(ref)))
            except NotFound:
                continue
        return found

    def clone(self, template: str, node: str, spec: VmSpec, *, full: bool, storage: str | None) -> VmRef:
        nodes = {n.get("node") for n in self.client.get("/nodes") or []}
        if node not in nodes:
            raise InvalidInput(f"node {node!r} is not in the cluster (nodes: {', '.join(sorted(nodes))})",
                               field="node")
        source = self._template(template)
        path = f"/nodes/{source['node']}/qemu/{source['vmid']}/clone"
        last: ProviderError | None = None
        for attempt in range(CLONE_ATTEMPTS):
            newid = int(self.client.get("/cluster/nextid"))
            params: dict[str, Any] = {"newid": newid, "name": spec.name, "description": spec.marker.description,
                                      "full": full}
            if source["node"] != node:
                params["target"] = node
            if full and storage:
                params["storage"] = storage
            self._progress("cloning", f"template {source['vmid']} to VM {newid} on {node}")
            try:
                upid = self.client.post(path, **params)
                self._wait(upid, f"clone of template {source['vmid']} to VM {newid}")
                return VmRef(newid, node)
            except Conflict as error:  # another client took the id first
                last = error
                self._progress("retrying", f"vmid {newid} was taken meanwhile")
            except Transient as error:  # the clone may have happened: adopt it if so
                last = error
                ref = self.find(spec.marker)
                if ref is not None:
                    self._progress("adopting", f"VM {ref.vmid}, cloned before the answer was lost")
                    self._wait_unlocked(ref)
                    return ref
                time.sleep(0.2 * (attempt + 1))
        raise Transient(f"the clone did not succeed in {CLONE_ATTEMPTS} attempts: {last}", hint="retry later")

    def configure(self, ref: VmRef, spec: VmSpec) -> None:
        config = self._config(ref)
        model, mac, options = _mac(config)
        options["bridge"] = spec.bridge
        net0 = ",".join(f"{k}={v}" if v else k for k, v in {model: mac, **{k: v for k, v in options.items()
                                                                             if k != model}}.items())
        # Other tags stay; an earlier marker (the VM was renamed) goes.
        tags = [t for t in re.split(r"[;, ]", config.get("tags") or "") if t and not t.startswith("fdp-")]
        tags.append(spec.marker.tag)
        params: dict[str, Any] = {
            "name": spec.name, "cores": spec.cores, "memory": str(spec.memory_mib), "agent": "1",
            "net0": net0, "ipconfig0": spec.ipconfig0, "tags": ";".join(tags),
            "description": spec.marker.description,
        }
        delete = []
        if spec.ci_user:
            params["ciuser"] = spec.ci_user
        elif "ciuser" in config:
            delete.append("ciuser")
        if spec.ssh_keys:
            # Proxmox wants the keys URL-encoded, spaces as %20 (not '+'), inside the form encoding.
            params["sshkeys"] = urllib.parse.quote("\n".join(spec.ssh_keys) + "\n", safe="")
        elif "sshkeys" in config:
            delete.append("sshkeys")
        if delete:
            params["delete"] = ",".join(delete)
        elif all(str(config.get(key)) == str(value) for key, value in params.items()):
            return  # nothing to change: no task, no pending entry
        upid = self.client.post(self._vm_path(ref) + "/config", **params)
        self._wait(upid, f"configuration of VM {ref.vmid}")

    def resize(self, ref: VmRef, disk_gib: int) -> None:
        slot, size = _boot_disk(self._config(ref))
        if disk_gib * GIB < size:
            raise InvalidInput(f"shrinking disks is not supported: {slot} of VM {ref.vmid} has "
                               f"{size / GIB:g} GiB, asked for {disk_gib} GiB", field="diskGiB")
        if disk_gib * GIB == size:
            return
        upid = self.client.put(self._vm_path(ref) + "/resize", disk=slot, size=f"{disk_gib}G")
        self._wait(upid, f"resize of {slot} of VM {ref.vmid}")

    def _running(self, ref: VmRef) -> bool:
        return (self.client.get(self._vm_path(ref) + "/status/current") or {}).get("status") == "running"

    def start(self, ref: VmRef) -> None:
        if not self._running(ref):
            self._wait(self.client.post(self._vm_path(ref) + "/status/start"), f"start of VM {ref.vmid}")

    def stop(self, ref: VmRef) -> None:
        if self._running(ref):
            self._wait(self.client.post(self._vm_path(ref) + "/status/stop"), f"stop of VM {ref.vmid}")

    def status(self, ref: VmRef, marker: Marker, *, wait_agent: float = 0.0) -> VmState:
        try:
            current = self.client.get(self._vm_path(ref) + "/status/current") or {}
            config = self._config(ref)
        except NotFound:
            raise self._gone(ref, "does not exist") from None
        if config.get("template") or not marker.carried_by(config.get("tags"), config.get("description")):
            raise self._gone(ref, f"does not carry the marker {marker.tag} of {marker.name!r}: the VM that had "
                                  "this vmid is gone and another took its place")
        running = current.get("status") == "running"
        pending = False
        if running:
            items = self.client.get(self._vm_path(ref) + "/pending") or []
            pending = any(("pending" in item or item.get("delete")) for item in items)
        _, mac, _ = _mac(config)
        _, size = _boot_disk(config)
        address = None
        if running and _agent_enabled(config):
            with self._waiting(f"the guest agent of VM {ref.vmid}", wait_agent):
                address = self._address(ref, mac, wait_agent)
        if address is None and running:
            if wait_agent > 0:
                raise Transient(f"the guest agent of VM {ref.vmid} did not report an IPv4 address for "
                                f"{mac} within {wait_agent:.0f} s",
                                hint="install and enable qemu-guest-agent in the template, raise "
                                     "agentTimeoutSeconds, or set it to 0 not to wait")
            static = _options(config.get("ipconfig0", "")).get("ip", "")
            address = static.split("/")[0] if static and static != "dhcp" else None
        return VmState(ref=ref, name=config.get("name", ""), running=running, mac_address=mac,
                       ipv4_address=address, cores=int(config.get("cores", 1)),
                       memory_mib=_memory(config.get("memory")), disk_gib=-(-size // GIB),
                       pending_reboot=pending)

    def _address(self, ref: VmRef, mac: str, wait: float) -> str | None:
        """The IPv4 address the guest agent reports on the interface with ``mac``; None if it won't say."""
        deadline = time.monotonic() + wait
        announced = False
        pause = 0.1
        while True:
            try:
                self.client.request("POST", self._vm_path(ref) + "/agent/ping")
                answer = self.client.request("GET", self._vm_path(ref) + "/agent/network-get-interfaces") or {}
                for interface in answer.get("result", []):
                    if str(interface.get("hardware-address", "")).upper() != mac:
                        continue
                    for ip in interface.get("ip-addresses", []):
                        if ip.get("ip-address-type") != "ipv4":
                            continue
                        parsed = ipaddress.IPv4Address(ip["ip-address"])
                        if not (parsed.is_loopback or parsed.is_link_local):
                            return str(parsed)
            except (ProviderError, ValueError):
                pass  # the agent is not up yet (Proxmox answers 500 "QEMU guest agent is not running")
            if time.monotonic() >= deadline:
                return None
            if not announced:
                self._progress("waiting", f"for the guest agent of VM {ref.vmid} to report its address")
                announced = True
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 1.5, 2.0)

    def delete(self, ref: VmRef, marker: Marker) -> None:
        try:
            config = self._config(ref)
            if config.get("template") or not marker.carried_by(config.get("tags"), config.get("description")):
                if self.ctx is not None:
                    self.ctx.log("VM %s does not carry the marker %s: not ours, left alone", ref.vmid, marker.tag)
                return
            if self._running(ref):
                self._wait(self.client.post(self._vm_path(ref) + "/status/stop"), f"stop of VM {ref.vmid}")
            upid = self.client.delete(self._vm_path(ref), purge=True, **{"destroy-unreferenced-disks": True})
            self._wait(upid, f"deletion of VM {ref.vmid}")
        except NotFound:
            return


def _untrusted(method):
    """Proxmox's answers are data from outside: a shape this backend cannot read is a ProtocolError
    naming the cluster and what was wrong, not a bug in the plugin."""
    import functools

    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise ProtocolError(
                f"the Proxmox VE API at {self.client.base} answered {method.__name__} with data this provider "
                f"cannot read ({type(error).__name__}: {printable(error, 200)})",
                hint="check that api.url points at a Proxmox VE API; nothing more was changed") from None

    return checked


for _name in ("find", "claim", "clone", "configure", "resize", "start", "stop", "status", "delete"):
    setattr(PveBackend, _name, _untrusted(getattr(PveBackend, _name)))
