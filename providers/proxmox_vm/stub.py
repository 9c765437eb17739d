"""The stub backend: a simulated Proxmox VE cluster in a local state directory.

The whole cluster is one JSON document, ``cluster.json``, in the state
directory.  Every operation takes an exclusive file lock (``cluster.lock``:
``flock(2)``, or the filelock package where there is no ``fcntl``), reads
the document, changes it and writes it back atomically (a temporary file in
the same directory, then ``os.replace``), so that
concurrent provider processes see one consistent cluster, two creates never
get the same vmid, and a process killed at any instant leaves either the old
or the new document, never half of one.  There is no fsync: this is a
simulation, and surviving a power cut is not worth a disk flush on every
operation of a process NixOps4 starts per operation.

A fresh state directory holds a cluster with one node, ``pve``, and two
templates on it:

======  ===================  =====  ========  ============  ==============
vmid    name                 cores  memory    boot disk     cloud-init user
======  ===================  =====  ========  ============  ==============
9000    ``debian-12-cloud``  1      512 MiB   scsi0, 2 GiB  ``debian``
9001    ``nixos-cloud``      1      1024 MiB  scsi0, 4 GiB  (image default)
======  ===================  =====  ========  ============  ==============

What it simulates as Proxmox VE does: the lowest free vmid from 100 up;
clones by template vmid or name, only of templates; a MAC address per VM in
Proxmox's ``BC:24:11`` range (deterministic: derived from the vmid); disks
that grow but never shrink; a stopped or running power state; changes to
cores, memory and cloud-init on a running VM wait for the next start
(``pendingReboot``); the guest's IPv4 address while it runs is the static
address configured at boot, or with DHCP a lease ``10.a.b.c`` made of the
vmid's bytes (vmid 100 gets 10.0.0.100).

Run ``python -m fediversity_providers.providers.proxmox_vm.stub --help`` to
list, stop or remove VMs behind the provider's back (to see drift).
"""

from __future__ import annotations

import copy
import json
import os
import time
from contextlib import contextmanager
from typing import Any, Iterator

from fediversity_providers import Conflict, Context, InvalidInput, NotFound, ProviderError, Transient

from .backend import Marker, VmRef, VmSpec, VmState, sha256, taken

__all__ = ["StubBackend", "StubCluster", "default_state_dir", "TEMPLATES"]

STATE_FILE = "cluster.json"
LOCK_FILE = "cluster.lock"
LOCK_TIMEOUT = 60.0
FIRST_VMID = 100
STORAGES = ("local-lvm", "local")
#: What a running VM only picks up when it (re)starts.
COLD_KEYS = ("cores", "memory", "ciuser", "sshkeys", "ipconfig0")


def _mac(vmid: int) -> str:
    digest = sha256(f"proxmox-stub:{vmid}".encode()).digest()
    return "BC:24:11:" + ":".join(f"{b:02X}" for b in digest[:3])


def _dhcp_lease(vmid: int) -> str:
    return f"10.{(vmid >> 16) & 255}.{(vmid >> 8) & 255}.{vmid & 255}"


def _template(vmid: int, name: str, memory: int, disk: int, ciuser: str | None) -> dict[str, Any]:
    return {
        "vmid": vmid, "node": "pve", "name": name, "template": True,
        "cores": 1, "memory": memory, "disk": {"slot": "scsi0", "sizeGiB": disk, "storage": "local-lvm"},
        "net0": {"model": "virtio", "mac": _mac(vmid), "bridge": "vmbr0"}, "agent": 1,
        "ciuser": ciuser, "sshkeys": [], "ipconfig0": "ip=dhcp", "tags": "", "description": "",
        "status": "stopped", "booted": None,
    }


TEMPLATES = {
    "9000": _template(9000, "debian-12-cloud", 512, 2, "debian"),
    "9001": _template(9001, "nixos-cloud", 1024, 4, None),
}


def default_state_dir() -> str:
    """``$XDG_STATE_HOME/fediversity-providers/proxmox-stub`` (XDG's default: ~/.local/state)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "fediversity-providers", "proxmox-stub")


_CLUSTERS: dict[str, "StubCluster"] = {}


class StubCluster:
    """The simulated cluster in ``state_dir``; every change is one locked, atomic transaction."""

    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        # os.path, not pathlib: pathlib's imports cost more than a stub operation.
        self.state_dir = os.fspath(state_dir) if state_dir else default_state_dir()
        self.path = os.path.join(self.state_dir, STATE_FILE)
        self._path = self.path
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    @classmethod
    def at(cls, state_dir: str | os.PathLike[str] | None) -> "StubCluster":
        """The cluster in ``state_dir``, one object per directory and process (it keeps the read cache)."""
        key = str(state_dir or default_state_dir())
        cluster = _CLUSTERS.get(key)
        if cluster is None:
            cluster = _CLUSTERS[key] = cls(key)
        return cluster

    @contextmanager
    def transaction(self, deadline: float | None = None) -> Iterator[dict[str, Any]]:
        """The cluster document, locked; written back (atomically) if the block changed it.

        The lock is waited for at most ``LOCK_TIMEOUT`` seconds, and not past
        ``deadline`` (a :func:`time.monotonic` instant, the request's).
        """
        try:
            os.makedirs(self.state_dir, exist_ok=True)
        except OSError as error:
            raise InvalidInput(f"cannot create the stub's state directory {self.state_dir}: {error}",
                               field="stub.stateDir", hint="choose a writable directory") from error
        with _locked(os.path.join(self.state_dir, LOCK_FILE), self.state_dir, deadline):
            state = self._load()
            # Compared as text: the C encoder is much faster than a deep copy.
            before = json.dumps(state, sort_keys=True)
            yield state
            after = json.dumps(state, sort_keys=True)
            if after != before:
                self._save(after)

    def read(self) -> dict[str, Any]:
        """The cluster document as it is now, without taking the lock; do not change it.

        Writers replace the file atomically, so a reader always sees one whole
        state.  Reads are NixOps4's most frequent request: the parsed document
        is kept while the file's identity (inode, size, mtime) stays the same.
        """
        try:
            with os.fdopen(_open(self._path, os.O_RDONLY), "rb") as f:
                st = os.fstat(f.fileno())
                key = (st.st_ino, st.st_size, st.st_mtime_ns)
                if self._cache is not None and self._cache[0] == key:
                    return self._cache[1]
                state = self._parse(f.read())
        except FileNotFoundError:
            return {"version": 1, "nodes": ["pve"], "vms": copy.deepcopy(TEMPLATES)}
        self._cache = (key, state)
        return state

    def snapshot(self) -> dict[str, Any]:
        """A copy of the cluster document as it is now."""
        return copy.deepcopy(self.read())

    def _load(self) -> dict[str, Any]:
        prefix = f".{STATE_FILE}."
        for name in os.listdir(self.state_dir):  # a writer died before its replace
            if name.startswith(prefix) and name.endswith(".tmp"):
                _unlink(os.path.join(self.state_dir, name))
        try:
            with os.fdopen(_open(self.path, os.O_RDONLY), "rb") as f:
                text = f.read()
        except FileNotFoundError:
            return {"version": 1, "nodes": ["pve"], "vms": copy.deepcopy(TEMPLATES)}
        return self._parse(text)

    def _parse(self, text: str | bytes) -> dict[str, Any]:
        try:
            state = json.loads(text)
            if state.get("version") != 1:
                raise ValueError(f"unknown version {state.get('version')!r}")
            return state
        except (ValueError, AttributeError) as error:
            raise ProviderError(f"the stub's cluster file {self.path} is unreadable: {error}",
                                field="stub.stateDir", hint="remove it to start from a fresh cluster") from error

    def _save(self, text: str) -> None:
        tmp = os.path.join(self.state_dir, f".{STATE_FILE}.{os.getpid()}.tmp")
        try:
            _unlink(tmp)  # a leftover of a dead process with our pid; never followed if a symlink
            fd = _open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            _unlink(tmp)
            raise


def _open(path: str, flags: int) -> int:
    """``os.open`` that never follows a symlink at ``path`` (someone else's file is not ours to write)."""
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as error:
        if error.errno == getattr(__import__("errno"), "ELOOP", -1):
            raise InvalidInput(f"{path} is a symbolic link; the stub does not follow links to its files",
                               field="stub.stateDir", hint="remove the link; nothing was changed") from None
        raise


def check_state_dir(path: str) -> str:
    """``path`` if absolute, normalised (no ``.``/``..``/``//``) and free of control characters."""
    from fediversity_providers.core.untrusted import refuse_control

    refuse_control(path, field="stub.stateDir")
    trimmed = path.rstrip("/") or "/"
    if not os.path.isabs(path) or os.path.normpath(trimmed) != trimmed or trimmed.startswith("//"):
        raise InvalidInput(f"{path!r} is not an absolute, normalised path", field="stub.stateDir",
                           hint="give an absolute path without '.', '..' or repeated '/'; nothing was changed")
    return trimmed


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextmanager
def _locked(path: str, state_dir: str, deadline: float | None = None) -> Iterator[None]:
    """An exclusive lock on ``path`` between processes, released when the block ends or the process dies.

    On POSIX this is ``flock(2)`` straight away (what the filelock package does
    there too, at a fraction of its import time: provider start-up is the hot
    path); elsewhere the filelock package.
    """
    wait = LOCK_TIMEOUT if deadline is None else max(0.0, min(LOCK_TIMEOUT, deadline - time.monotonic()))
    busy = Transient(f"the stub's cluster {state_dir} stayed locked for {wait:.1f} s",
                     hint="another provider process holds it; retry; nothing was changed")
    try:
        import fcntl
    except ImportError:  # not POSIX
        import filelock

        try:
            with filelock.FileLock(str(path), timeout=wait):
                yield
        except filelock.Timeout:
            raise busy from None
        return
    fd = _open(path, os.O_RDWR | os.O_CREAT)
    try:
        deadline = time.monotonic() + wait
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise busy from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class StubBackend:
    """:class:`~.backend.Backend` on a :class:`StubCluster`."""

    kind = "stub"

    def __init__(self, state_dir: str | os.PathLike[str] | None = None, ctx: Context | None = None) -> None:
        self.cluster = StubCluster.at(state_dir)
        self.ctx = ctx

    # -- helpers ----------------------------------------------------------------

    def _deadline(self) -> float | None:
        return getattr(self.ctx, "deadline", None)

    def _vm(self, state: dict[str, Any], ref: VmRef, marker: Marker | None = None) -> dict[str, Any]:
        vm = state["vms"].get(str(ref.vmid))
        if vm is None or vm["node"] != ref.node or vm["template"]:
            raise self._gone(ref, "does not exist")
        if marker is not None and not marker.carried_by(vm["tags"], vm["description"]):
            raise self._gone(ref, f"does not carry the marker {marker.tag} of {marker.name!r}: "
                                  "the VM that had this vmid is gone and another took its place")
        return vm

    def _gone(self, ref: VmRef, why: str) -> NotFound:
        return NotFound(f"VM {ref.vmid} on node {ref.node!r} of the simulated cluster {self.cluster.state_dir} {why}",
                        hint="it was deleted, or removed outside this provider; create the resource again for a new VM")

    def _template(self, state: dict[str, Any], template: str) -> dict[str, Any]:
        if template.isdigit():
            vm = state["vms"].get(str(int(template)))
            if vm is None:
                raise NotFound(f"template {template} does not exist in the simulated cluster",
                               hint=self._template_hint(state))
            if not vm["template"]:
                raise InvalidInput(f"VM {template} is not a template", field="template",
                                   hint=self._template_hint(state))
            return vm
        found = [vm for vm in state["vms"].values() if vm["template"] and vm["name"] == template]
        if not found:
            raise NotFound(f"no template named {template!r} in the simulated cluster",
                           hint=self._template_hint(state))
        if len(found) > 1:
            raise Conflict(f"{len(found)} templates are named {template!r}", field="template",
                           hint="name the template by its vmid")
        return found[0]

    @staticmethod
    def _template_hint(state: dict[str, Any]) -> str:
        names = ", ".join(f"{vm['vmid']} ({vm['name']})" for vm in state["vms"].values() if vm["template"])
        return f"templates there: {names or 'none'}"

    # -- the Backend interface --------------------------------------------------

    def find(self, marker: Marker) -> VmRef | None:
        state = self.cluster.read()
        for vm in sorted(state["vms"].values(), key=lambda vm: vm["vmid"]):
            if not vm["template"] and marker.carried_by(vm["tags"], vm["description"]):
                return VmRef(vm["vmid"], vm["node"])
        return None

    def claim(self, template: str, node: str, spec: VmSpec, *, full: bool, storage: str | None,
              adopt: bool) -> tuple[VmRef, str]:
        """Find and clone under one lock: two concurrent creates of one name never both clone."""
        with self.cluster.transaction(self._deadline()) as state:
            mine = [vm for vm in state["vms"].values() if not vm["template"]
                    and (vm["name"] == spec.name or spec.marker.carried_by(vm["tags"], vm["description"]))]
            for vm in sorted(mine, key=lambda vm: vm["vmid"]):
                if spec.marker.made_by(vm["description"]) and spec.marker.carried_by(vm["tags"], vm["description"]):
                    return VmRef(vm["vmid"], vm["node"]), "retry"
            if mine:
                first = min(mine, key=lambda vm: vm["vmid"])
                if not adopt:
                    raise taken(first["vmid"], first["node"], spec.name)
                return VmRef(first["vmid"], first["node"]), "adopted"
            return self._clone(state, template, node, spec, full=full, storage=storage), "cloned"

    def clone(self, template: str, node: str, spec: VmSpec, *, full: bool, storage: str | None) -> VmRef:
        with self.cluster.transaction(self._deadline()) as state:
            return self._clone(state, template, node, spec, full=full, storage=storage)

    def _clone(self, state: dict[str, Any], template: str, node: str, spec: VmSpec, *, full: bool,
               storage: str | None) -> VmRef:
        if node not in state["nodes"]:
            raise InvalidInput(f"node {node!r} is not in the simulated cluster (nodes: "
                               f"{', '.join(state['nodes'])})", field="node")
        if storage is not None and storage not in STORAGES:
            raise InvalidInput(f"storage {storage!r} does not exist (storages: {', '.join(STORAGES)})",
                               field="storage")
        source = self._template(state, template)
        vmid = FIRST_VMID
        while str(vmid) in state["vms"]:
            vmid += 1
        vm = copy.deepcopy(source)
        vm.update(vmid=vmid, node=node, name=spec.name, template=False, status="stopped", booted=None,
                  tags=spec.marker.tag, description=spec.marker.description, fullClone=full,
                  clonedFrom=source["vmid"])
        vm["net0"]["mac"] = _mac(vmid)
        if full and storage:
            vm["disk"]["storage"] = storage
        state["vms"][str(vmid)] = vm
        return VmRef(vmid, node)

    def configure(self, ref: VmRef, spec: VmSpec) -> None:
        with self.cluster.transaction(self._deadline()) as state:
            vm = self._vm(state, ref)
            vm.update(name=spec.name, cores=spec.cores, memory=spec.memory_mib, agent=1,
                      ciuser=spec.ci_user, sshkeys=list(spec.ssh_keys), ipconfig0=spec.ipconfig0,
                      tags=spec.marker.tag, description=spec.marker.description)
            vm["net0"]["bridge"] = spec.bridge

    def resize(self, ref: VmRef, disk_gib: int) -> None:
        with self.cluster.transaction(self._deadline()) as state:
            vm = self._vm(state, ref)
            if disk_gib < vm["disk"]["sizeGiB"]:
                raise InvalidInput(
                    f"shrinking disks is not supported: {vm['disk']['slot']} of VM {ref.vmid} has "
                    f"{vm['disk']['sizeGiB']} GiB, asked for {disk_gib} GiB",
                    field="diskGiB", hint=f"set diskGiB to {vm['disk']['sizeGiB']} or more")
            vm["disk"]["sizeGiB"] = disk_gib

    def start(self, ref: VmRef) -> None:
        with self.cluster.transaction(self._deadline()) as state:
            vm = self._vm(state, ref)
            if vm["status"] != "running":
                vm["status"] = "running"
                vm["booted"] = {key: copy.deepcopy(vm[key]) for key in COLD_KEYS}

    def stop(self, ref: VmRef) -> None:
        with self.cluster.transaction(self._deadline()) as state:
            vm = self._vm(state, ref)
            vm["status"], vm["booted"] = "stopped", None

    def status(self, ref: VmRef, marker: Marker, *, wait_agent: float = 0.0) -> VmState:
        vm = self._vm(self.cluster.read(), ref, marker)
        running = vm["status"] == "running"
        booted = vm["booted"] or {}
        address = None
        if running:
            ipconfig = dict(part.split("=", 1) for part in booted["ipconfig0"].split(","))
            address = _dhcp_lease(ref.vmid) if ipconfig["ip"] == "dhcp" else ipconfig["ip"].split("/")[0]
        return VmState(
            ref=ref, name=vm["name"], running=running, mac_address=vm["net0"]["mac"],
            ipv4_address=address, cores=vm["cores"], memory_mib=vm["memory"],
            disk_gib=vm["disk"]["sizeGiB"],
            pending_reboot=running and any(booted.get(key) != vm[key] for key in COLD_KEYS),
        )

    def delete(self, ref: VmRef, marker: Marker) -> None:
        try:
            self._vm(self.cluster.read(), ref, marker)
        except NotFound:
            return  # gone already, or not ours: nothing to take the lock for
        with self.cluster.transaction(self._deadline()) as state:
            try:
                self._vm(state, ref, marker)
            except NotFound:
                return
            del state["vms"][str(ref.vmid)]


def main(argv: list[str] | None = None) -> int:
    """Look at and meddle with a stub cluster, as someone at the Proxmox console would."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fediversity_providers.providers.proxmox_vm.stub",
                                     description=main.__doc__)
    parser.add_argument("--state-dir", help=f"the cluster's directory (default: {default_state_dir()})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the VMs and templates as JSON")
    for name in ("remove", "stop", "start"):
        sub.add_parser(name, help=f"{name} a VM behind the provider's back").add_argument("vmid", type=int)
    args = parser.parse_args(argv)
    cluster = StubCluster(args.state_dir)
    with cluster.transaction() as state:
        vm = state["vms"].get(str(getattr(args, "vmid", -1)))
        if args.command == "list":
            import sys

            json.dump(state["vms"], sys.stdout, indent=1, sort_keys=True)
            print()
            return 0
        if vm is None:
            parser.error(f"no VM {args.vmid}")
        if args.command == "remove":
            del state["vms"][str(args.vmid)]
        elif args.command == "stop":
            vm["status"], vm["booted"] = "stopped", None
        else:
            vm["status"], vm["booted"] = "running", {key: copy.deepcopy(vm[key]) for key in COLD_KEYS}
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
