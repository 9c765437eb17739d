"""A Proxmox VE API emulator, and the fixtures to test ``proxmox_vm`` against it.

:class:`PveEmulator` serves Proxmox VE's HTTP API on 127.0.0.1 (a free port,
in a thread) with a stateful cluster: nodes, templates, VMs, asynchronous
tasks (UPIDs, polled; a fresh task's status answers 400 once, as Proxmox
sometimes does), pending changes of running VMs, and a guest agent that
comes up a moment after the VM starts.  Every request is checked against
Proxmox VE's own API schema (``pve-apidoc.json``: path, method, parameter
names, types, enums, required parameters, the property strings of ``net0``
and friends); a request that does not pass is answered 400 and recorded in
:attr:`PveEmulator.violations`, which the fixtures assert empty.

Fault switches: :meth:`~PveEmulator.inject_error` (5xx answers),
``task_seconds`` (slow tasks), ``fail_task`` (a task that ends in error),
``lose_answer`` (the operation is carried out, then the connection drops
without an answer), ``agent_never`` (the guest agent never answers),
``steal_ids`` (another client takes the vmid between ``nextid`` and the
clone), ``warn_task`` (a task ending in ``WARNINGS:``).

The schema document is looked up in ``$FEDIVERSITY_PVE_APIDOC``, else in
``shared/reference/proxmox/pve-apidoc.json`` beside the repository checkout.

Fixtures: ``pve_emulator`` (a running emulator), ``pve_cluster`` (a
:class:`PveTarget`: the emulator, or a real cluster when ``PVE_URL``,
``PVE_TOKEN_ID`` and ``PVE_TOKEN_SECRET_FILE`` are set, with ``PVE_TEMPLATE``
and optionally ``PVE_NODE``, ``PVE_CA_FILE``, ``PVE_VERIFY_TLS=0``).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from .prereq import require

__all__ = ["PveEmulator", "ApiSchema", "PveTarget", "apidoc_path", "pve_emulator", "pve_cluster", "APIDOC_ENV"]

APIDOC_ENV = "FEDIVERSITY_PVE_APIDOC"
COLD_KEYS = ("cores", "memory", "ciuser", "sshkeys", "ipconfig0", "sockets", "cpu")
BOOLEANS = {"0", "1", "true", "false", "on", "off", "yes", "no"}


def apidoc_path() -> Path | None:
    """Where ``pve-apidoc.json`` is: the environment variable, else beside the checkout."""
    if os.environ.get(APIDOC_ENV):
        return Path(os.environ[APIDOC_ENV])
    repo_root = Path(__file__).resolve().parents[2]
    for root in (repo_root, Path.cwd()):
        candidate = root.parent / "shared" / "reference" / "proxmox" / "pve-apidoc.json"
        if candidate.is_file():
            return candidate
    return None


# -- the API schema ---------------------------------------------------------------------------

def _perl_pattern(pattern: str) -> str:
    match = re.fullmatch(r"\(\?\^\w*:(.*)\)", pattern, re.S)
    return match.group(1) if match else pattern


class ApiSchema:
    """Proxmox VE's API schema: which requests exist, and what their parameters must look like."""

    def __init__(self, path: Path) -> None:
        self.routes: list[tuple[re.Pattern, int, str, dict, list[str]]] = []
        for root in json.loads(path.read_text()):
            self._walk(root)

    def _walk(self, node: dict) -> None:
        segments = node["path"].strip("/").split("/")
        regex = "/".join("([^/]+)" if s.startswith("{") else re.escape(s) for s in segments)
        literal = sum(not s.startswith("{") for s in segments)
        names = [s[1:-1] for s in segments if s.startswith("{")]
        self.routes.append((re.compile("/" + regex), literal, node["path"], node.get("info", {}), names))
        for child in node.get("children") or []:
            self._walk(child)

    def match(self, path: str) -> tuple[str, dict, dict[str, str]] | None:
        best = None
        for regex, literal, template, info, names in self.routes:
            found = regex.fullmatch(path)
            if found and (best is None or literal > best[0]):
                best = (literal, template, info, dict(zip(names, found.groups())))
        return best[1:] if best else None

    def check(self, method: str, path: str, params: dict[str, str]) -> list[str]:
        """What is wrong with this request by the schema; empty when nothing is."""
        matched = self.match(path)
        if matched is None:
            return [f"no such path in the API: {path}"]
        template, info, path_params = matched
        if method not in info:
            return [f"{template} has no {method} (only {', '.join(sorted(info))})"]
        properties = info[method].get("parameters", {}).get("properties", {})
        everything = {**{k: unquote(v) for k, v in path_params.items()}, **params}
        errors = []
        for name, value in everything.items():
            spec = properties.get(name) or properties.get(re.sub(r"\d+$", "[n]", name))
            if spec is None:
                errors.append(f"{method} {template}: unknown parameter {name!r}")
                continue
            problem = self._check_value(spec, value)
            if problem:
                errors.append(f"{method} {template}: parameter {name}={value!r}: {problem}")
        for name, spec in properties.items():
            if not spec.get("optional") and "[n]" not in name and name not in everything:
                errors.append(f"{method} {template}: required parameter {name!r} missing")
        return errors

    def _check_value(self, spec: dict, value: str) -> str | None:
        kind = spec.get("type", "string")
        if kind == "integer":
            if not re.fullmatch(r"-?\d+", value):
                return "not an integer"
            number = int(value)
            if "minimum" in spec and number < spec["minimum"] or "maximum" in spec and number > spec["maximum"]:
                return f"out of range [{spec.get('minimum')}, {spec.get('maximum')}]"
        elif kind == "number":
            try:
                float(value)
            except ValueError:
                return "not a number"
        elif kind == "boolean":
            if value.lower() not in BOOLEANS:
                return "not a boolean (0/1)"
        elif kind == "string":
            if "enum" in spec and value not in spec["enum"]:
                return f"not one of {spec['enum']}"
            if "maxLength" in spec and len(value) > spec["maxLength"]:
                return f"longer than {spec['maxLength']}"
            if "pattern" in spec and not re.fullmatch(_perl_pattern(spec["pattern"]), value):
                return f"does not match {spec['pattern']}"
            fmt = spec.get("format")
            if isinstance(fmt, dict):
                return self._check_property_string(fmt, value)
            if fmt == "urlencoded" and not re.fullmatch(r"[A-Za-z0-9%._~*'()!-]*", value):
                return "not URL-encoded (spaces must be %20, not '+' or ' ')"
            if fmt == "pve-vmid" and not re.fullmatch(r"\d+", value):
                return "not a vmid"
            if fmt == "pve-qm-ipconfig":
                return self._check_property_string(
                    {"ip": {}, "gw": {}, "ip6": {}, "gw6": {}}, value) or (
                    None if re.fullmatch(r"(ip=(dhcp|\d+\.\d+\.\d+\.\d+/\d+)|gw=\d+\.\d+\.\d+\.\d+|ip6=\S+|gw6=\S+)"
                                         r"(,(ip=(dhcp|\d+\.\d+\.\d+\.\d+/\d+)|gw=\d+\.\d+\.\d+\.\d+|ip6=\S+|gw6=\S+))*",
                                         value) else "not an ipconfig")
            if fmt == "pve-tag-list" and not re.fullmatch(r"([a-z0-9_][a-z0-9_\-+.]*)([;, ][a-z0-9_][a-z0-9_\-+.]*)*",
                                                          value):
                return "not a tag list"
            if fmt == "disk-size" or (spec.get("typetext", "").startswith("\\+?\\d+")):
                pass
        return None

    def _check_property_string(self, fmt: dict, value: str) -> str | None:
        default_key = next((k for k, v in fmt.items() if v.get("default_key")), None)
        for index, part in enumerate(value.split(",")):
            key, sep, item = part.partition("=")
            if not sep:
                if index == 0 and default_key:
                    key, item = default_key, part
                else:
                    return f"{part!r} is not key=value"
            sub = fmt.get(key)
            if sub is None:
                return f"unknown key {key!r}"
            if "keyAlias" in sub:
                continue  # e.g. net0's "virtio=MAC"
            if "alias" in sub:
                sub = fmt.get(sub["alias"], {})
            problem = self._check_value({k: v for k, v in sub.items() if k != "format" or isinstance(v, str)}, item)
            if problem:
                return f"{key}: {problem}"
        return None


@functools.cache
def _schema(path: str) -> ApiSchema:
    return ApiSchema(Path(path))


# -- the emulated cluster ---------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status: int, reason: str, errors: dict | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.errors = status, reason, errors


class _Drop(Exception):
    """Carry out the request, then close the connection without an answer."""


def _mac(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "BC:24:11:" + ":".join(f"{b:02X}" for b in digest[:3])


def _opts(value: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in str(value).split(",") if part)


class PveEmulator:
    """A Proxmox VE cluster behind its HTTP API; see the module's docstring."""

    def __init__(self, *, nodes: tuple[str, ...] = ("pve",), token_id: str = "deployer@pve!ci",
                 task_seconds: float = 0.05, agent_delay: float = 0.3, schema_path: Path | None = None) -> None:
        path = schema_path or apidoc_path()
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(f"pve-apidoc.json not found; set {APIDOC_ENV}")
        self.schema = _schema(str(path))
        self.nodes = list(nodes)
        self.token_id = token_id
        self.secret = str(uuid.uuid4())
        self.lock = threading.RLock()
        self.vms: dict[int, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.violations: list[str] = []
        # fault switches
        self.task_seconds = task_seconds
        self.agent_delay = agent_delay
        self.agent_never = False
        self.fail_task: dict[str, str] = {}     # task type (qmclone, qmstart, ...) -> exit status
        self.warn_task: dict[str, str] = {}     # task type -> "WARNINGS: n"
        self.lose_answer: set[str] = set()      # task types whose answer is lost after the work is done
        self.steal_ids = 0                      # clones that find their newid taken by another client
        self.early_400 = 1                      # how often a fresh task's status answers 400
        self._errors: list[dict[str, Any]] = []
        self._counter = 0
        self.add_template(9000, "debian-12-cloud", disk_gib=2)
        self.add_template(9001, "nixos-cloud", disk_gib=4)
        self._server: ThreadingHTTPServer | None = None

    # -- set-up and switches --------------------------------------------------------------

    def add_template(self, vmid: int, name: str, *, node: str = "pve", disk_gib: int = 2) -> None:
        config = {
            "name": name, "cores": 1, "memory": "512", "template": 1, "agent": "1",
            "scsi0": f"local-lvm:base-{vmid}-disk-0,size={disk_gib}G",
            "ide2": f"local-lvm:vm-{vmid}-cloudinit,media=cdrom", "boot": "order=scsi0;ide2;net0",
            "net0": f"virtio={_mac(f'template {vmid}')},bridge=vmbr0", "scsihw": "virtio-scsi-pci",
            "ostype": "l26",
        }
        self.vms[vmid] = {"node": node, "config": config, "pending": {}, "status": "stopped",
                          "booted": None, "agent_at": None, "foreign": False}

    def inject_error(self, status: int = 503, reason: str = "Service Unavailable", *, count: int = 1,
                     method: str | None = None, path: str | None = None) -> None:
        """The next ``count`` requests matching ``method`` and the regex ``path`` answer ``status``."""
        self._errors.append({"status": status, "reason": reason, "count": count, "method": method, "path": path})

    def our_vms(self) -> dict[int, str]:
        """vmid -> name of every VM a client made (no templates, nothing a fault switch made)."""
        with self.lock:
            return {vmid: vm["config"].get("name", "") for vmid, vm in self.vms.items()
                    if not vm["config"].get("template") and not vm["foreign"]}

    def start(self) -> "PveEmulator":
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="pve-emulator", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "PveEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the emulator first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- request handling -----------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> tuple[int, str, Any]:
        split = urlsplit(target)
        if not split.path.startswith("/api2/json/"):
            raise ApiError(404, "Not Found")
        path = split.path[len("/api2/json"):]
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        if body:
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
        with self.lock:
            self.requests.append((method, path, params))
        if headers.get("Authorization") != f"PVEAPIToken={self.token_id}={self.secret}":
            raise ApiError(401, "authentication failure")
        problems = self.schema.check(method, path, params)
        if problems:
            with self.lock:
                self.violations.extend(problems)
            raise ApiError(400, "Parameter verification failed", {"request": "; ".join(problems)})
        with self.lock:
            for fault in self._errors:
                if fault["count"] > 0 and (fault["method"] in (None, method)) and (
                        fault["path"] is None or re.search(fault["path"], path)):
                    fault["count"] -= 1
                    raise ApiError(fault["status"], fault["reason"])
            self._tick()
            for pattern, verb, action in ROUTES:
                found = pattern.fullmatch(path)
                if found and verb == method:
                    return 200, "OK", action(self, params, **found.groupdict())
        raise ApiError(501, f"Method '{method} {path}' not implemented")

    # -- tasks ----------------------------------------------------------------------------

    def _task(self, node: str, kind: str, ident: Any, done: Callable[[], None] | None = None) -> str:
        self._counter += 1
        now = time.time()
        upid = (f"UPID:{node}:{os.getpid() + self._counter:08X}:{self._counter:08X}:{int(now):08X}:"
                f"{kind}:{ident}:{self.token_id}:")
        failure = self.fail_task.get(kind)
        self.tasks[upid] = {"node": node, "type": kind, "id": str(ident), "done_at": now + self.task_seconds,
                            "status": "running", "exitstatus": None, "done": done, "failure": failure,
                            "early": self.early_400, "log": [f"starting task {kind} {ident}"]}
        self._tick()
        if kind in self.lose_answer:
            raise _Drop()
        return upid

    def _tick(self) -> None:
        now = time.time()
        for task in self.tasks.values():
            if task["status"] == "running" and task["done_at"] <= now:
                task["status"] = "stopped"
                if task["failure"]:
                    task["exitstatus"] = task["failure"]
                    task["log"].append(f"TASK ERROR: {task['failure']}")
                    if task["type"] == "qmclone":  # a failed clone removes what it began
                        self.vms.pop(int(task["target"]), None) if task.get("target") else None
                    continue
                if task["done"]:
                    task["done"]()
                task["exitstatus"] = self.warn_task.get(task["type"], "OK")
                task["log"].append(f"TASK {task['exitstatus']}")

    # -- the cluster's objects ------------------------------------------------------------

    def _vm(self, node: str, vmid: str, *, unlocked: bool = False) -> dict[str, Any]:
        vm = self.vms.get(int(vmid))
        if vm is None or vm["node"] != node:
            raise ApiError(500, f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
        if unlocked and vm["config"].get("lock"):
            raise ApiError(500, f"VM is locked ({vm['config']['lock']})")
        return vm

    def _merged(self, vm: dict[str, Any]) -> dict[str, Any]:
        config = {**vm["config"], **{k: v for k, v in vm["pending"].items() if v is not None}}
        for key, value in vm["pending"].items():
            if value is None:
                config.pop(key, None)
        return config

    def _address(self, vmid: int, vm: dict[str, Any]) -> str:
        ip = _opts((vm["booted"] or {}).get("ipconfig0", "ip=dhcp")).get("ip", "dhcp")
        return f"10.{(vmid >> 16) & 255}.{(vmid >> 8) & 255}.{vmid & 255}" if ip == "dhcp" else ip.split("/")[0]


class _Handler(BaseHTTPRequestHandler):
    emulator: PveEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, reason, data = self.emulator.handle(self.command, self.path, self.headers, body)
            document: dict[str, Any] = {"data": data}
        except _Drop:
            self.close_connection = True
            return
        except ApiError as error:
            status, reason = error.status, error.reason
            document = {"data": None, **({"errors": error.errors} if error.errors else {}), "message": reason}
        payload = json.dumps(document).encode()
        self.send_response(status, reason.replace("\n", " "))
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve


# -- routes: (path regex, method, action(emulator, params, **path groups)) -------------------

def _version(em: PveEmulator, params: dict) -> Any:
    return {"version": "8.3.0", "release": "8.3", "repoid": "emulated"}


def _nodes(em: PveEmulator, params: dict) -> Any:
    return [{"node": n, "status": "online", "type": "node", "id": f"node/{n}"} for n in em.nodes]


def _nextid(em: PveEmulator, params: dict) -> Any:
    vmid = 100
    while vmid in em.vms:
        vmid += 1
    return str(vmid)


def _resources(em: PveEmulator, params: dict) -> Any:
    result = []
    for vmid, vm in sorted(em.vms.items()):
        config = em._merged(vm)
        item = {"id": f"qemu/{vmid}", "type": "qemu", "vmid": vmid, "node": vm["node"],
                "name": config.get("name", ""), "status": vm["status"], "template": int(bool(config.get("template"))),
                "maxcpu": int(config.get("cores", 1)), "maxmem": int(_opts(config.get("memory", "512")).get(
                    "current", str(config.get("memory", "512")).split(",")[0])) * 1024**2}
        for key in ("tags", "lock"):
            if config.get(key):
                item[key] = config[key]
        result.append(item)
    return result if params.get("type") in (None, "vm") else []


def _clone(em: PveEmulator, params: dict, node: str, vmid: str) -> Any:
    source = em._vm(node, vmid)
    newid = int(params["newid"])
    target = params.get("target", node)
    if target not in em.nodes:
        raise ApiError(500, f"no such cluster node '{target}'")
    if em.steal_ids > 0 and newid not in em.vms:
        em.steal_ids -= 1
        em.vms[newid] = {"node": target, "config": {"name": "someone-else", "cores": 1, "memory": "512",
                                                    "net0": f"virtio={_mac(f'foreign {newid}')},bridge=vmbr0",
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
    config["net0"] = f"{model.split('=')[0]}={_mac(f'vm {newid} {time.time()}')}" + (f",{rest}" if rest else "")
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


def _get_config(em: PveEmulator, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid)
    config = dict(vm["config"]) if params.get("current") in ("1", "true") else em._merged(vm)
    for key in ("cores", "sockets", "template"):  # typed as integers in Proxmox's answer
        if key in config:
            config[key] = int(config[key])
    config["digest"] = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return config


def _set_config(em: PveEmulator, params: dict, node: str, vmid: str, *, asynchronous: bool = True) -> Any:
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


def _pending(em: PveEmulator, params: dict, node: str, vmid: str) -> Any:
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


def _resize(em: PveEmulator, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid, unlocked=True)
    disk = params["disk"]
    if disk not in vm["config"]:
        raise ApiError(500, f"disk '{disk}' does not exist")
    volume, _, rest = vm["config"][disk].partition(",")
    options = _opts(rest)
    current = int(options.get("size", "0G").rstrip("G"))
    wanted = params["size"]
    size = current + int(wanted[1:].rstrip("G")) if wanted.startswith("+") else int(wanted.rstrip("G"))
    if size < current:
        raise ApiError(500, "shrinking disks is not supported")
    options["size"] = f"{size}G"

    def done() -> None:
        vm["config"][disk] = volume + "," + ",".join(f"{k}={v}" for k, v in options.items())

    return em._task(node, "qmresize", vmid, done)


def _current(em: PveEmulator, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid)
    config = em._merged(vm)
    return {"vmid": int(vmid), "name": config.get("name", ""), "status": vm["status"],
            "qmpstatus": vm["status"], "agent": int(config.get("agent", "0").split(",")[0].endswith("1")),
            "cpus": int(config.get("cores", 1)), **({"lock": config["lock"]} if config.get("lock") else {})}


def _start(em: PveEmulator, params: dict, node: str, vmid: str) -> Any:
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


def _stop(em: PveEmulator, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid, unlocked=True)

    def done() -> None:
        vm.update(status="stopped", booted=None, agent_at=None)

    return em._task(node, "qmstop", vmid, done)


def _destroy(em: PveEmulator, params: dict, node: str, vmid: str) -> Any:
    vm = em._vm(node, vmid, unlocked=True)
    if vm["status"] == "running":
        raise ApiError(500, f"VM {vmid} is running - destroy failed")

    def done() -> None:
        em.vms.pop(int(vmid), None)

    return em._task(node, "qmdestroy", vmid, done)


def _agent(em: PveEmulator, node: str, vmid: str) -> dict[str, Any]:
    vm = em._vm(node, vmid)
    if vm["status"] != "running":
        raise ApiError(500, f"VM {vmid} is not running")
    if vm["agent_at"] is None or time.time() < vm["agent_at"]:
        raise ApiError(500, "QEMU guest agent is not running")
    return vm


def _ping(em: PveEmulator, params: dict, node: str, vmid: str) -> Any:
    _agent(em, node, vmid)
    return {"result": {}}


def _interfaces(em: PveEmulator, params: dict, node: str, vmid: str) -> Any:
    vm = _agent(em, node, vmid)
    mac = re.search(r"([0-9A-F]{2}(:[0-9A-F]{2}){5})", vm["config"]["net0"], re.I).group(1).lower()
    return {"result": [
        {"name": "lo", "hardware-address": "00:00:00:00:00:00",
         "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
        {"name": "eth0", "hardware-address": mac,
         "ip-addresses": [{"ip-address": em._address(int(vmid), vm), "ip-address-type": "ipv4", "prefix": 24},
                          {"ip-address": "fe80::be24:11ff:fe00:1", "ip-address-type": "ipv6", "prefix": 64}]},
    ]}


def _task_status(em: PveEmulator, params: dict, node: str, upid: str) -> Any:
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


def _task_log(em: PveEmulator, params: dict, node: str, upid: str) -> Any:
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


# -- what tests point proxmox_vm at -----------------------------------------------------------

class PveTarget:
    """A cluster to test against: the emulator, or a real one named by environment variables."""

    def __init__(self, api: dict[str, Any], node: str, template: str, emulator: PveEmulator | None) -> None:
        self.api, self.node, self.template, self.emulator = api, node, template, emulator

    @property
    def real(self) -> bool:
        return self.emulator is None

    def our_vms(self, names: set[str] | None = None) -> dict[int, str]:
        """vmid -> name of the VMs tests made (all on the emulator; on a real cluster those named ``names``)."""
        if self.emulator is not None:
            return self.emulator.our_vms()
        from fediversity_providers.providers.proxmox_vm.client import PveClient

        secret = Path(self.api["tokenSecretFile"]).read_text().strip()
        client = PveClient(self.api["url"], self.api["tokenId"], secret, verify_tls=self.api.get("verifyTls", True),
                           ca_file=self.api.get("caFile"))
        return {int(vm["vmid"]): vm.get("name", "") for vm in client.get("/cluster/resources", type="vm") or []
                if not vm.get("template") and (names is None or vm.get("name") in names)}


def _emulator_or_fail() -> PveEmulator:
    path = apidoc_path()
    require(path is not None and path.is_file(),
            f"Proxmox VE's API schema (pve-apidoc.json) not found beside the checkout; set {APIDOC_ENV}")
    return PveEmulator(schema_path=path)


@pytest.fixture
def pve_emulator():
    """A running :class:`PveEmulator`; the test fails if the client sent a request the schema refuses."""
    emulator = _emulator_or_fail().start()
    try:
        yield emulator
    finally:
        emulator.stop()
    assert not emulator.violations, "requests Proxmox VE's API schema refuses:\n" + "\n".join(emulator.violations)


@pytest.fixture
def pve_cluster(tmp_path):
    """A :class:`PveTarget`: a real cluster with ``PVE_URL`` & co. set, else the emulator."""
    if os.environ.get("PVE_URL"):
        api = {"url": os.environ["PVE_URL"], "tokenId": os.environ["PVE_TOKEN_ID"],
               "tokenSecretFile": os.environ["PVE_TOKEN_SECRET_FILE"],
               "verifyTls": os.environ.get("PVE_VERIFY_TLS", "1") not in ("0", "false", "no"),
               "caFile": os.environ.get("PVE_CA_FILE")}
        yield PveTarget(api, os.environ.get("PVE_NODE", "pve"), os.environ.get("PVE_TEMPLATE", "9000"), None)
        return
    emulator = _emulator_or_fail().start()
    secret_file = tmp_path / "pve-token-secret"
    secret_file.write_text(emulator.secret + "\n")
    try:
        yield PveTarget({"url": emulator.url, "tokenId": emulator.token_id, "tokenSecretFile": str(secret_file)},
                        "pve", "debian-12-cloud", emulator)
    finally:
        emulator.stop()
    assert not emulator.violations, "requests Proxmox VE's API schema refuses:\n" + "\n".join(emulator.violations)
