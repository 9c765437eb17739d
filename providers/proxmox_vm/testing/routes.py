"""The emulated Proxmox VE API's endpoints: (path regex, method, action) in :data:`ROUTES`.

Each action gets the emulator (its lock held), the request's parameters and
the path's groups, and returns the answer's ``data`` or raises
:class:`ApiError`.  Kept apart from :mod:`.emulator` (the server and the
switches) so that each stays readable; what an action needs of the emulator is
declared here as :class:`Cluster`, so that this module does not import the
emulator that imports it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import time
from typing import Any, Callable, Protocol
from urllib.parse import unquote

__all__ = ["ROUTES", "ApiError", "Drop", "COLD_KEYS", "Cluster", "mac", "opts"]

#: What a running VM only picks up when it (re)starts.
COLD_KEYS = ("cores", "memory", "ciuser", "sshkeys", "ipconfig0", "sockets", "cpu")


class Cluster(Protocol):
    """What the actions read and change of the emulated cluster (``PveEmulator`` is one)."""

    nodes: list[str]
    token_id: str
    vms: dict[int, dict[str, Any]]
    tasks: dict[str, dict[str, Any]]
    agent_delay: float
    agent_never: bool
    steal_ids: int

    def _vm(self, node: str, vmid: str, *, unlocked: bool = False) -> dict[str, Any]: ...

    def _merged(self, vm: dict[str, Any]) -> dict[str, Any]: ...

    def _task(self, node: str, kind: str, ident: Any, done: Callable[[], None] | None = None) -> str: ...

    def _address(self, vmid: int, vm: dict[str, Any]) -> str: ...


class ApiError(Exception):
    def __init__(self, status: int, reason: str, errors: dict | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.errors = status, reason, errors


class Drop(Exception):
    """Carry out the request, then close the connection without an answer."""


def mac(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "BC:24:11:" + ":".join(f"{b:02X}" for b in digest[:3])


def opts(value: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in str(value).split(",") if part)


def _version(em: Cluster, params: dict) -> Any:
    return {"version": "8.3.0", "release": "8.3", "repoid": "emulated"}


def _nodes(em: Cluster, params: dict) -> Any:
    return [{"node": n, "status": "online", "type": "node", "id": f"node/{n}"} for n in em.nodes]


def _nextid(em: Cluster, params: dict) -> Any:
    vmid = 100
    while vmid in em.vms:
        vmid += 1
    return vmid


def _resources(em: Cluster, params: dict) -> Any:
    result = []
    for vmid, vm in sorted(em.vms.items()):
        config = em._merged(vm)
        item = {"id": f"qemu/{vmid}", "type": "qemu", "vmid": vmid, "node": vm["node"],
                "name": config.get("name", ""), "status": vm["status"], "template": int(bool(config.get("template"))),
                "maxcpu": int(config.get("cores", 1)), "maxmem": int(opts(config.get("memory", "512")).get(
                    "current", str(config.get("memory", "512")).split(",")[0])) * 1024**2}
        for key in ("tags", "lock"):
            if config.get(key):
                item[key] = config[key]
        result.append(item)
    return result if params.get("type") in (None, "vm") else []


def _clone(em: Cluster, params: dict, node: str, vmid: str) -> Any:
    source = em._vm(node, vmid)
    newid = int(params["newid"])
    target = params.get("target", node)
    if target not in em.nodes:
        raise ApiError(500, f"no such cluster node '{target}'")
    if em.steal_ids > 0 and newid not in em.vms:
        em.steal_ids -= 1
        em.vms[newid] = {"node": target, "config": {"name": "someone-else", "cores": 1, "memory": "512",
                                                    "net0": f"virtio={mac(f'foreign {newid}')},bridge=vmbr0",
                                                    "scsi0": f"local-lvm:vm-{newid}-disk-0,size=1G"},
                         "pending": {}, "status": "stopped", "booted": None, "agent_at": None, "foreign": True}
    if newid in em.vms:
        raise ApiError(500, f"unable to create VM {newid}: config file already exists")
    full = params.get("full", "0").lower() in ("1", "true", "on", "yes")
    if not source["config"].get("template") and not full:
        raise ApiError(500, "Linked clone feature is not supported for VMs that are not templates")
    config = copy.deepcopy({k: v for k, v in em._merged(source).items() if k not in ("template", "tags", "digest")})
    for key, value in list(config.items()):
        if re.fullmatch(r"(scsi|virtio|sata|ide)\d+", key):
            volume, _, rest = value.partition(",")
            store = params.get("storage") if full and params.get("storage") else volume.split(":")[0]
            config[key] = f"{store}:vm-{newid}-{'cloudinit' if 'cloudinit' in volume else 'disk-0'}" + (
                f",{rest}" if rest else "")
    model, _, rest = config["net0"].partition(",")
    config["net0"] = f"{model.split('=')[0]}={mac(f'vm {newid} {time.time()}')}" + (f",{rest}" if rest else "")
    config.update(name=params.get("name", f"Copy-of-VM-{source['config'].get('name')}"), lock="clone")
    if "description" in params:
        config["description"] = params["description"]
    em.vms[newid] = {"node": target, "config": config, "pending": {}, "status": "stopped", "booted": None,
                     "agent_at": None, "foreign": False}

    def done() -> None:
        em.vms[newid]["config"].pop("lock", None)

    upid = None
    try:
        upid = em._task(node, "qmclone", vmid, done)
    finally:
        if upid is None:  # the answer is lost: find the task to mark its target anyway
            upid = list(em.tasks)[-1]
        em.tasks[upid]["target"] = str(newid)
    return upid


def _get_config(em: Cluster, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid)
    config = dict(vm["config"]) if params.get("current") in ("1", "true") else em._merged(vm)
    for key in ("cores", "sockets", "template"):  # typed as integers in Proxmox's answer
        if key in config:
            config[key] = int(config[key])
    config["digest"] = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return config


def _set_config(em: Cluster, params: dict, node: str, vmid: str, *, asynchronous: bool = True) -> Any:
    vm = em._vm(node, vmid, unlocked=True)
    running = vm["status"] == "running"
    changes: dict[str, Any] = {k: v for k, v in params.items() if k not in ("delete", "digest", "node", "vmid")}
    for key in filter(None, params.get("delete", "").split(",")):
        changes[key.strip()] = None
    for key, value in changes.items():
        if running and key in COLD_KEYS:
            if vm["config"].get(key) == value:
                vm["pending"].pop(key, None)
            else:
                vm["pending"][key] = value
        elif value is None:
            vm["config"].pop(key, None)
        else:
            vm["config"][key] = value
    return em._task(node, "qmconfig", vmid) if asynchronous else None


def _pending(em: Cluster, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid)
    items = []
    for key in sorted(set(vm["config"]) | set(vm["pending"])):
        item: dict[str, Any] = {"key": key}
        if key in vm["config"]:
            item["value"] = vm["config"][key]
        if key in vm["pending"]:
            if vm["pending"][key] is None:
                item["delete"] = 1
            else:
                item["pending"] = vm["pending"][key]
        items.append(item)
    return items


def _resize(em: Cluster, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid, unlocked=True)
    disk = params["disk"]
    if disk not in vm["config"]:
        raise ApiError(500, f"disk '{disk}' does not exist")
    volume, _, rest = vm["config"][disk].partition(",")
    options = opts(rest)
    current = int(options.get("size", "0G").rstrip("G"))
    wanted = params["size"]
    size = current + int(wanted[1:].rstrip("G")) if wanted.startswith("+") else int(wanted.rstrip("G"))
    if size < current:
        raise ApiError(500, "shrinking disks is not supported")
    options["size"] = f"{size}G"

    def done() -> None:
        vm["config"][disk] = volume + "," + ",".join(f"{k}={v}" for k, v in options.items())

    return em._task(node, "qmresize", vmid, done)


def _current(em: Cluster, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid)
    config = em._merged(vm)
    return {"vmid": int(vmid), "name": config.get("name", ""), "status": vm["status"],
            "qmpstatus": vm["status"], "ha": {"managed": 0}, "agent": int(config.get("agent", "0").split(",")[0].endswith("1")),
            "cpus": int(config.get("cores", 1)), **({"lock": config["lock"]} if config.get("lock") else {})}


def _start(em: Cluster, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid, unlocked=True)
    if vm["config"].get("template"):
        raise ApiError(500, "you can't start a vm if it's a template")

    def done() -> None:
        if vm["status"] == "running":
            return
        for key, value in vm["pending"].items():
            if value is None:
                vm["config"].pop(key, None)
            else:
                vm["config"][key] = value
        vm["pending"].clear()
        vm["status"] = "running"
        vm["booted"] = {k: vm["config"].get(k) for k in COLD_KEYS}
        agent = vm["config"].get("agent", "0").split(",")[0].endswith("1")
        vm["agent_at"] = None if em.agent_never or not agent else time.time() + em.agent_delay

    return em._task(node, "qmstart", vmid, done)


def _stop(em: Cluster, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid, unlocked=True)

    def done() -> None:
        vm.update(status="stopped", booted=None, agent_at=None)

    return em._task(node, "qmstop", vmid, done)


def _destroy(em: Cluster, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid, unlocked=True)
    if vm["status"] == "running":
        raise ApiError(500, f"VM {vmid} is running - destroy failed")

    def done() -> None:
        em.vms.pop(int(vmid), None)

    vm["destroying"] = True

    return em._task(node, "qmdestroy", vmid, done)


def _agent(em: Cluster, node: str, vmid: str) -> dict[str, Any]:
    vm = em._vm(node, vmid)
    if vm["status"] != "running":
        raise ApiError(500, f"VM {vmid} is not running")
    if vm["agent_at"] is None or time.time() < vm["agent_at"]:
        raise ApiError(500, "QEMU guest agent is not running")
    return vm


def _ping(em: Cluster, params: dict, node: str, vmid: str) -> Any:
    _agent(em, node, vmid)
    return {"result": {}}


def _interfaces(em: Cluster, params: dict, node: str, vmid: str) -> Any:
    vm = _agent(em, node, vmid)
    mac = re.search(r"([0-9A-F]{2}(:[0-9A-F]{2}){5})", vm["config"]["net0"], re.I).group(1).lower()
    return {"result": [
        {"name": "lo", "hardware-address": "00:00:00:00:00:00",
         "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
        {"name": "eth0", "hardware-address": mac,
         "ip-addresses": [{"ip-address": em._address(int(vmid), vm), "ip-address-type": "ipv4", "prefix": 24},
                          {"ip-address": "fe80::be24:11ff:fe00:1", "ip-address-type": "ipv6", "prefix": 64}]},
    ]}


def _task_status(em: Cluster, params: dict, node: str, upid: str) -> Any:
    task = em.tasks.get(unquote(upid))
    if task is None or task["node"] != node:
        raise ApiError(400, "Parameter verification failed", {"upid": "no such task"})
    if task["early"] > 0:
        task["early"] -= 1
        raise ApiError(400, "Parameter verification failed", {"upid": "no such task"})
    answer = {"upid": unquote(upid), "node": node, "pid": 1, "pstart": 1, "starttime": int(time.time()),
              "type": task["type"], "id": task["id"], "user": em.token_id, "status": task["status"]}
    if task["status"] == "stopped":
        answer["exitstatus"] = task["exitstatus"]
    return answer


def _task_log(em: Cluster, params: dict, node: str, upid: str) -> Any:
    task = em.tasks.get(unquote(upid))
    if task is None:
        raise ApiError(400, "Parameter verification failed", {"upid": "no such task"})
    return [{"n": i + 1, "t": line} for i, line in enumerate(task["log"])]


_VM = r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)"
ROUTES = [(re.compile(p), m, a) for p, m, a in [
    (r"/version", "GET", _version),
    (r"/nodes", "GET", _nodes),
    (r"/cluster/nextid", "GET", _nextid),
    (r"/cluster/resources", "GET", _resources),
    (_VM + "/clone", "POST", _clone),
    (_VM + "/config", "GET", _get_config),
    (_VM + "/config", "POST", _set_config),
    (_VM + "/config", "PUT", functools.partial(_set_config, asynchronous=False)),
    (_VM + "/pending", "GET", _pending),
    (_VM + "/resize", "PUT", _resize),
    (_VM + "/status/current", "GET", _current),
    (_VM + "/status/start", "POST", _start),
    (_VM + "/status/stop", "POST", _stop),
    (_VM, "DELETE", _destroy),
    (_VM + "/agent/ping", "POST", _ping),
    (_VM + "/agent/network-get-interfaces", "GET", _interfaces),
    (r"/nodes/(?P<node>[^/]+)/tasks/(?P<upid>[^/]+)/status", "GET", _task_status),
    (r"/nodes/(?P<node>[^/]+)/tasks/(?P<upid>[^/]+)/log", "GET", _task_log),
]]

