"""A Proxmox VE API emulator, to test ``proxmox_vm`` against (fixtures in :mod:`.fixtures`).

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
clone), ``warn_task`` (a task ending in ``WARNINGS:``), ``raw_answers``
(deliberate nonsense: a request matching a path regex is answered 200 with
the given bytes, exempt from the schema's check, or drip-fed one byte every
``drip_seconds``).

The schema document is looked up in ``$FEDIVERSITY_PVE_APIDOC``, else in the
repository's verbatim copy, ``tests/reference/proxmox/pve-apidoc.json``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from .apischema import APIDOC_ENV, ApiSchema, apidoc_path, load
from .routes import ROUTES, ApiError, Drop, mac, opts

__all__ = ["PveEmulator", "ApiSchema", "apidoc_path", "APIDOC_ENV"]


class PveEmulator:
    """A Proxmox VE cluster behind its HTTP API; see the module's docstring."""

    def __init__(self, *, nodes: tuple[str, ...] = ("pve",), token_id: str = "deployer@pve!ci",
                 task_seconds: float = 0.05, agent_delay: float = 0.3, schema_path: Path | None = None,
                 tls_dir: Path | None = None) -> None:
        path = schema_path or apidoc_path()
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(f"pve-apidoc.json not found; set {APIDOC_ENV}")
        self.schema = load(str(path))
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
        self.raw_answers: list[tuple[str, bytes]] = []  # (path regex, body): answered 200 as it is
        self.drip_seconds = 0.0                 # > 0: raw answers are sent one byte at a time
        self._errors: list[dict[str, Any]] = []
        self._counter = 0
        self.add_template(9000, "debian-12-cloud", disk_gib=2)
        self.add_template(9001, "nixos-cloud", disk_gib=4)
        self._server: ThreadingHTTPServer | None = None
        #: With ``tls_dir``, HTTPS with a certificate for 127.0.0.1 signed by a CA in ``ca_file``.
        self.tls_dir = tls_dir
        self.ca_file: Path | None = None

    # -- set-up and switches --------------------------------------------------------------

    def add_template(self, vmid: int, name: str, *, node: str = "pve", disk_gib: int = 2) -> None:
        config = {
            "name": name, "cores": 1, "memory": "512", "template": 1, "agent": "1",
            "scsi0": f"local-lvm:base-{vmid}-disk-0,size={disk_gib}G",
            "ide2": f"local-lvm:vm-{vmid}-cloudinit,media=cdrom", "boot": "order=scsi0;ide2;net0",
            "net0": f"virtio={mac(f'template {vmid}')},bridge=vmbr0", "scsihw": "virtio-scsi-pci",
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

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every task has ended (a client may have stopped waiting for some)."""
        deadline = time.time() + timeout
        while True:
            with self.lock:
                self._tick()
                if all(task["status"] == "stopped" for task in self.tasks.values()):
                    return
            if time.time() > deadline:
                raise TimeoutError("emulated tasks still running")
            time.sleep(0.05)

    def start(self) -> "PveEmulator":
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if self.tls_dir is not None:
            import ssl

            self.ca_file, cert, key = _certificates(Path(self.tls_dir))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="pve-emulator", daemon=True).start()
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
        scheme = "https" if self.tls_dir is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

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
                    try:
                        data = action(self, params, **found.groupdict())
                    except Drop:
                        raise
                    problems = self.schema.check_answer(method, path, data)
                    if problems:  # the emulator itself is wrong: say so loudly
                        self.violations.extend(problems)
                    return 200, "OK", data
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
            raise Drop()
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
        if unlocked and vm.get("destroying"):  # qm destroy holds the config's file lock
            raise ApiError(500, f"can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout")
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
        ip = opts((vm["booted"] or {}).get("ipconfig0", "ip=dhcp")).get("ip", "dhcp")
        return f"10.{(vmid >> 16) & 255}.{(vmid >> 8) & 255}.{vmid & 255}" if ip == "dhcp" else ip.split("/")[0]


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server-key.pem)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Emulated Proxmox VE CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class _Handler(BaseHTTPRequestHandler):
    emulator: PveEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        for pattern, raw in self.emulator.raw_answers:
            if re.search(pattern, urlsplit(self.path).path):
                self._raw(raw)
                return
        try:
            status, reason, data = self.emulator.handle(self.command, self.path, self.headers, body)
            document: dict[str, Any] = {"data": data}
        except Drop:
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

    def _raw(self, data: bytes) -> None:
        whole = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(data)).encode() + b"\r\nConnection: close\r\n\r\n" + data)
        self.close_connection = True
        try:
            if not self.emulator.drip_seconds:
                self.wfile.write(whole)
                return
            for i in range(len(whole)):
                self.wfile.write(whole[i:i + 1])
                self.wfile.flush()
                time.sleep(self.emulator.drip_seconds)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = _serve
