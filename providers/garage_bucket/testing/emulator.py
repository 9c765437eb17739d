"""The emulator behind :mod:`.fixtures`: Garage's admin API state, its HTTP handler, and moto S3.

See :mod:`.fixtures` for what it does and the fixtures that serve it.
"""

from __future__ import annotations

import datetime
import http.server
import json
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from typing import Any

from .openapi import Spec, SpecViolation

__all__ = ["GarageEmulator", "MotoS3", "Fault"]

PERMS = ("read", "write", "owner")
#: operationIds of both documents that a node of a :class:`.cluster.GarageCluster` hands to its cluster
CLUSTER_OPERATIONS = frozenset({
    "GetClusterStatus", "GetNodes", "GetClusterHealth", "GetHealth", "ConnectClusterNodes", "AddNode",
    "GetClusterLayout", "GetLayout", "UpdateClusterLayout", "AddLayout", "PreviewClusterLayoutChanges",
    "ApplyClusterLayout", "ApplyLayout", "RevertClusterLayout", "RevertLayout", "GetNodeInfo",
    "GetClusterLayoutHistory",
})


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class MotoS3:
    """A moto S3 server on 127.0.0.1 (port chosen by the OS), and direct access to its buckets."""

    def __init__(self, port: int = 0) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    @property
    def backend(self):
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    @property
    def _names(self) -> dict:
        """moto's registry of bucket names (it finds buckets through it)."""
        from moto.s3.models import s3_backends

        return s3_backends.bucket_accounts

    def create(self, name: str) -> None:
        self.delete(name)  # a leftover of an earlier test
        self.backend.create_bucket(name, "us-east-1")

    def alias(self, old: str, new: str) -> None:
        """One bucket under two names, as Garage's global aliases are."""
        if old in self.backend.buckets:
            self.backend.buckets[new] = self.backend.buckets[old]
            self._names[new] = self._names[old]

    def unalias(self, name: str, remaining: str) -> None:
        bucket = self.backend.buckets.pop(name, None)
        self._names.pop(name, None)
        if bucket is not None and bucket.name == name:
            bucket.name = remaining

    def delete(self, name: str) -> None:
        self.backend.buckets.pop(name, None)
        self._names.pop(name, None)

    def usage(self, name: str) -> tuple[int, int, int]:
        """(objects, bytes, unfinished multipart uploads)."""
        bucket = self.backend.buckets.get(name)
        if bucket is None:
            return 0, 0, 0
        objects = list(bucket.keys.values())
        return len(objects), sum(getattr(o, "size", 0) or 0 for o in objects), len(bucket.multiparts)

    def stop(self) -> None:
        self.server.stop()


class Fault:
    """One armed fault: ``mode`` on the next ``times`` requests to ``operation`` (None: any)."""

    MODES = ("5xx", "slow", "drop", "lost", "5xx-after", "slow-start", "garbage", "drip")

    def __init__(self, mode: str, operation: str | None, times: int, delay: float, body: bytes = b"") -> None:
        if mode not in self.MODES:
            raise ValueError(f"fault mode must be one of {self.MODES}")
        self.mode, self.operation, self.times, self.delay = mode, operation, times, delay
        self.body = body


class GarageEmulator:
    """Garage's admin API, emulated; ``endpoint`` is its URL, ``token`` its admin token."""

    def __init__(self, garage_version: int = 2, *, token: str | None = None, s3: MotoS3 | None = None,
                 spec_dir=None, port: int = 0, s3_port: int = 0) -> None:
        self.garage_version = garage_version
        self.token = token or secrets.token_hex(16)
        self.s3 = s3
        self.specs = {v: Spec(v, spec_dir) for v in ("v1", "v2")}
        self.buckets: dict[str, dict] = {}
        self.keys: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.violations: list[str] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        #: set by :class:`.cluster.GarageCluster` on its nodes: the layout operations go to it
        self.cluster = None
        self.node = None
        emulator = self

        class Handler(_Handler):
            emu = emulator

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        #: the S3 endpoint to use: moto behind a gate that checks keys' permissions as Garage does
        self.s3_gate = None
        self.s3_endpoint = None
        if s3 is not None:
            from .s3_gate import S3Gate

            self.s3_gate = S3Gate(self, s3.endpoint, s3_port)
            self.s3_endpoint = self.s3_gate.endpoint

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.s3_gate is not None:
            self.s3_gate.close()
        if self.s3 is not None:
            for bucket in self.buckets.values():
                for alias in bucket["aliases"]:
                    self.s3.delete(alias)

    # -- switches and inspection ---------------------------------------------------------------
    def fault(self, mode: str, operation: str | None = None, *, times: int = 1, delay: float = 1.0,
              body: bytes = b"") -> Fault:
        """Arm a fault: "5xx" (answer 500, do nothing), "slow" (do it, answer after ``delay`` s),
        "drop" (close the connection, do nothing), "lost" (do it, close without answering),
        "5xx-after" (do it, then answer 500 as if it had failed), "slow-start" (wait ``delay`` s,
        then do it and answer; CreateBucket then is not atomic, as Garage's is not: it checks the
        alias, waits, makes the bucket, and leaves it without alias if the alias was taken meanwhile),
        "garbage" (do nothing, answer 200 with ``body`` as it is: deliberate nonsense, exempt from the
        documents' check), "drip" (do nothing, send a 200 answer one byte every ``delay`` s)."""
        fault = Fault(mode, operation, times, delay, body)
        with self.lock:
            self.faults.append(fault)
        return fault

    def count(self, operation: str | None = None) -> int:
        return sum(1 for r in self.requests if operation is None or r["operation"] == operation)

    def operations(self) -> Counter:
        return Counter(r["operation"] for r in self.requests)

    def reset_counts(self) -> None:
        self.requests.clear()

    def bucket_by_alias(self, alias: str) -> dict | None:
        return next((b for b in self.buckets.values() if alias in b["aliases"]), None)

    def keys_named(self, name: str) -> list[dict]:
        return [k for k in self.keys.values() if k["name"] == name]

    def _take_fault(self, operation: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.operation in (None, operation):
                    fault.times -= 1
                    return fault
        return None

    # -- rendering ---------------------------------------------------------------------------
    def _usage(self, b: dict) -> tuple[int, int, int]:
        if self.s3 is None or not b["aliases"]:
            return 0, 0, 0
        return self.s3.usage(b["aliases"][0])

    def bucket_info(self, b: dict, version: str) -> dict:
        objects, size, uploads = self._usage(b)
        keys = [{"accessKeyId": kid, "name": self.keys[kid]["name"] if kid in self.keys else "",
                 "permissions": dict(p), "bucketLocalAliases": []}
                for kid, p in b["perms"].items() if any(p.values())]
        web = None
        if b["website"] is not None:
            web = {"indexDocument": b["website"]["indexDocument"]}
            if b["website"].get("errorDocument") is not None or version == "v2":
                web["errorDocument"] = b["website"].get("errorDocument")
        info = {"id": b["id"], "globalAliases": list(b["aliases"]), "websiteAccess": b["website"] is not None,
                "websiteConfig": web, "keys": keys, "objects": objects, "bytes": size,
                "unfinishedUploads": uploads, "quotas": dict(b["quotas"])}
        if version == "v2":
            info.update(created=b["created"], unfinishedMultipartUploads=uploads,
                        unfinishedMultipartUploadParts=uploads, unfinishedMultipartUploadBytes=0)
        return info

    def key_info(self, k: dict, version: str, show_secret: bool) -> dict:
        buckets = [{"id": b["id"], "globalAliases": list(b["aliases"]), "localAliases": [],
                    "permissions": dict(b["perms"][k["id"]])}
                   for b in self.buckets.values() if any(b["perms"].get(k["id"], {}).values())]
        info = {"name": k["name"], "accessKeyId": k["id"],
                "secretAccessKey": k["secret"] if show_secret else None,
                "permissions": {"createBucket": False}, "buckets": buckets}
        if version == "v2":
            info.update(expired=False, created=k["created"], expiration=None)
        return info

    # -- operations ----------------------------------------------------------------------------
    def _bucket(self, id: str | None = None, alias: str | None = None) -> dict:
        b = self.buckets.get(id) if id else (self.bucket_by_alias(alias) if alias else None)
        if b is None:
            raise ApiError(404, "NoSuchBucket", f"Bucket not found: {id or alias}")
        return b

    def _key(self, id: str | None) -> dict:
        if not id or id not in self.keys:
            raise ApiError(404, "NoSuchAccessKey", f"Access key not found: {id}")
        return self.keys[id]

    @staticmethod
    def _check_alias(alias: str) -> None:
        import re

        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", alias or ""):
            raise ApiError(400, "InvalidRequest", f"{alias}: not a valid bucket name")

    def dispatch(self, version: str, op: str, query: dict, body: Any) -> tuple[int, Any]:
        """Carry out one operation; (status, JSON body or None)."""
        with self.lock:
            return self._dispatch(version, op, query, body or {})

    def create_bucket_slowly(self, v: str, body: dict, delay: float) -> tuple[int, Any]:
        """CreateBucket in Garage's non-atomic steps, with ``delay`` between the check and the making."""
        alias = body.get("globalAlias")
        with self.lock:
            self._check_alias(alias)
            if self.bucket_by_alias(alias):
                raise ApiError(409, "BucketAlreadyExists", f"Bucket {alias} already exists")
        time.sleep(delay)
        with self.lock:
            b = {"id": secrets.token_hex(32), "created": _now(), "aliases": [], "website": None,
                 "quotas": {"maxSize": None, "maxObjects": None}, "perms": {}}
            self.buckets[b["id"]] = b
            if self.bucket_by_alias(alias):  # taken meanwhile: the new bucket stays without alias
                raise ApiError(409, "BucketAlreadyExists", f"Bucket {alias} already exists")
            b["aliases"].append(alias)
            if self.s3 is not None:
                self.s3.create(alias)
            return 200, self.bucket_info(b, v)

    def _dispatch(self, v: str, op: str, q: dict, body: dict) -> tuple[int, Any]:
        if self.cluster is not None and op in CLUSTER_OPERATIONS:
            return self.cluster.dispatch(self.node, v, op, q, body)
        if op in ("GetClusterHealth", "GetHealth"):
            return 200, {"status": "healthy", "knownNodes": 1, "connectedNodes": 1, "storageNodes": 1,
                         "storageNodesOk": 1, "partitions": 256, "partitionsQuorum": 256, "partitionsAllOk": 256}
        if op == "ListBuckets":
            out = []
            for b in self.buckets.values():
                item = {"id": b["id"], "globalAliases": list(b["aliases"]), "localAliases": []}
                if v == "v2":
                    item["created"] = b["created"]
                out.append(item)
            return 200, out
        if op == "GetBucketInfo":
            return 200, self.bucket_info(self._bucket(q.get("id"), q.get("globalAlias")), v)
        if op == "CreateBucket":
            alias = body.get("globalAlias")
            if alias is not None:
                self._check_alias(alias)
                if self.bucket_by_alias(alias):
                    raise ApiError(409, "BucketAlreadyExists", f"Bucket {alias} already exists")
            b = {"id": secrets.token_hex(32), "created": _now(), "aliases": [alias] if alias else [],
                 "website": None, "quotas": {"maxSize": None, "maxObjects": None}, "perms": {}}
            self.buckets[b["id"]] = b
            if alias and self.s3 is not None:
                self.s3.create(alias)
            return 200, self.bucket_info(b, v)
        if op == "UpdateBucket":
            b = self._bucket(q.get("id"))
            site = body.get("websiteAccess")
            if site is not None:
                if site.get("enabled"):
                    if not site.get("indexDocument"):
                        raise ApiError(400, "InvalidRequest", "Please specify indexDocument when enabling website access.")
                    b["website"] = {"indexDocument": site["indexDocument"], "errorDocument": site.get("errorDocument")}
                else:
                    if site.get("indexDocument") or site.get("errorDocument"):
                        raise ApiError(400, "InvalidRequest", "Cannot specify indexDocument or errorDocument when disabling website access.")
                    b["website"] = None
            if body.get("quotas") is not None:
                b["quotas"] = {"maxSize": body["quotas"].get("maxSize"), "maxObjects": body["quotas"].get("maxObjects")}
            return 200, self.bucket_info(b, v)
        if op == "DeleteBucket":
            if v == "v1" and self.garage_version >= 2:
                raise ApiError(400, "InvalidRequest", "v1 DeleteBucket is not supported by Garage 2.x")
            b = self._bucket(q.get("id"))
            objects, _, uploads = self._usage(b)
            if objects or uploads:
                raise ApiError(409, "BucketNotEmpty", "Bucket is not empty")
            del self.buckets[b["id"]]
            if self.s3 is not None:
                for alias in b["aliases"]:
                    self.s3.delete(alias)
            return (204, None) if v == "v1" else (200, None)
        if op in ("AddBucketAlias", "PutBucketGlobalAlias"):
            b = self._bucket(body.get("bucketId") or q.get("id"))
            alias = body.get("globalAlias") or q.get("alias")
            if alias is None:
                raise ApiError(400, "InvalidRequest", "local aliases are not emulated")
            self._check_alias(alias)
            other = self.bucket_by_alias(alias)
            if other is not None and other is not b:
                raise ApiError(409, "BucketAlreadyExists", f"Alias {alias} already exists")
            if other is None:
                if self.s3 is not None and b["aliases"]:
                    self.s3.alias(b["aliases"][0], alias)
                b["aliases"].append(alias)
            return 200, self.bucket_info(b, v)
        if op in ("RemoveBucketAlias", "DeleteBucketGlobalAlias"):
            b = self._bucket(body.get("bucketId") or q.get("id"))
            alias = body.get("globalAlias") or q.get("alias")
            if alias not in b["aliases"]:
                raise ApiError(400, "InvalidRequest", f"Bucket {b['id']} has no alias {alias}")
            if len(b["aliases"]) == 1:
                raise ApiError(400, "InvalidRequest", "Bucket has no other alias; delete it instead")
            b["aliases"].remove(alias)
            if self.s3 is not None:
                self.s3.unalias(alias, b["aliases"][0])
            return 200, self.bucket_info(b, v)
        if op in ("AllowBucketKey", "DenyBucketKey"):
            b = self._bucket(body.get("bucketId"))
            k = self._key(body.get("accessKeyId"))
            perms = b["perms"].setdefault(k["id"], {p: False for p in PERMS})
            for p in PERMS:
                if body.get("permissions", {}).get(p):
                    perms[p] = op == "AllowBucketKey"
            return 200, self.bucket_info(b, v)
        if op == "ListKeys":
            out = []
            for k in self.keys.values():
                item = {"id": k["id"], "name": k["name"]}
                if v == "v2":
                    item.update(expired=False, created=k["created"], expiration=None)
                out.append(item)
            return 200, out
        if op in ("CreateKey", "AddKey"):
            k = {"id": "GK" + secrets.token_hex(12), "secret": secrets.token_hex(32),
                 "name": body.get("name") or "", "created": _now()}
            self.keys[k["id"]] = k
            return 200, self.key_info(k, v, True)
        if op in ("GetKeyInfo", "GetKey"):
            if q.get("search"):
                found = [k for k in self.keys.values()
                         if k["id"].startswith(q["search"]) or k["name"].startswith(q["search"])]
                if len(found) != 1:
                    raise ApiError(404 if not found else 400, "NoSuchAccessKey" if not found else "InvalidRequest",
                                   f"{len(found)} keys match {q['search']}")
                k = found[0]
            else:
                k = self._key(q.get("id"))
            return 200, self.key_info(k, v, q.get("showSecretKey") == "true")
        if op == "DeleteKey":
            if v == "v1" and self.garage_version >= 2:
                raise ApiError(400, "InvalidRequest", "v1 DeleteKey is not supported by Garage 2.x")
            k = self._key(q.get("id"))
            del self.keys[k["id"]]
            for b in self.buckets.values():
                b["perms"].pop(k["id"], None)
            return (204, None) if v == "v1" else (200, None)
        raise ApiError(400, "InvalidRequest", f"{op} is not emulated")


class _Handler(http.server.BaseHTTPRequestHandler):
    emu: GarageEmulator
    protocol_version = "HTTP/1.0"

    def log_message(self, *args) -> None:  # quiet: the request log is in emu.requests
        pass

    def _send(self, status: int, body: Any) -> None:
        data = b"" if body is None and status == 204 else json.dumps(body).encode()
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)) if status != 204 else "0")
        self.end_headers()
        if status != 204:
            self.wfile.write(data)

    def _handle(self) -> None:
        emu = self.emu
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if emu.node is not None and not emu.node.up:  # a cluster node that is down answers nothing
            self.close_connection = True
            return
        url = urllib.parse.urlsplit(self.path)
        version = "v1" if url.path.startswith("/v1/") else "v2"
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = {"version": version, "method": self.command, "target": self.path, "operation": "?",
                  "status": None, "fault": None}
        emu.requests.append(record)
        spec = emu.specs[version]
        try:
            op = spec.check_request(self.command, self.path, raw, headers)
        except SpecViolation as exc:
            emu.violations.append(f"request {self.command} {self.path}: {exc}")
            self._answer(record, spec, None, 400, {"code": "InvalidRequest", "message": f"not in the document: {exc}",
                                                   "region": "garage", "path": url.path})
            return
        record["operation"] = op
        if headers.get("authorization") != f"Bearer {emu.token}":
            self._answer(record, spec, op, 403, {"code": "AccessDenied", "message": "Forbidden: invalid authorization token",
                                                 "region": "garage", "path": url.path})
            return
        if version == "v2" and emu.garage_version < 2:
            self._answer(record, spec, op, 400, {"code": "InvalidRequest", "message": "Unknown API endpoint",
                                                 "region": "garage", "path": url.path})
            return
        fault = emu._take_fault(op)
        record["fault"] = fault.mode if fault else None
        if fault and fault.mode == "5xx":
            self._answer(record, spec, op, 500, {"code": "InternalError", "message": "Internal error (fault switch)",
                                                 "region": "garage", "path": url.path})
            return
        if fault and fault.mode == "drop":
            self.close_connection = True
            return
        if fault and fault.mode in ("garbage", "drip"):
            record["status"] = 200
            self._raw(fault.body if fault.mode == "garbage" else b'{"id": "' + b"0" * 64 + b'"}',
                      fault.delay if fault.mode == "drip" else 0.0)
            return
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        try:
            if fault and fault.mode == "slow-start":
                if op == "CreateBucket":
                    status, body = emu.create_bucket_slowly(version, json.loads(raw), fault.delay)
                else:
                    time.sleep(fault.delay)
                    status, body = emu.dispatch(version, op, query, json.loads(raw) if raw else None)
            else:
                status, body = emu.dispatch(version, op, query, json.loads(raw) if raw else None)
        except ApiError as exc:
            status, body = exc.status, {"code": exc.code, "message": exc.message, "region": "garage", "path": url.path}
        except Exception as exc:  # an emulator bug: answer like Garage would, and fail the test
            emu.violations.append(f"emulator crashed on {op}: {exc!r}")
            status, body = 500, {"code": "InternalError", "message": repr(exc), "region": "garage", "path": url.path}
        if fault and fault.mode == "lost":
            record["status"] = status
            self.close_connection = True
            return
        if fault and fault.mode == "slow":
            time.sleep(fault.delay)
        if fault and fault.mode == "5xx-after":
            status, body = 500, {"code": "InternalError", "message": "Internal error after the work (fault switch)",
                                 "region": "garage", "path": url.path}
        self._answer(record, spec, op, status, body)

    def _raw(self, data: bytes, drip: float) -> None:
        """A 200 answer of exactly ``data``; with ``drip``, one byte every ``drip`` seconds."""
        try:
            head = (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n")
            if not drip:
                self.wfile.write(head + data)
                return
            for i in range(len(head + data)):
                self.wfile.write((head + data)[i:i + 1])
                self.wfile.flush()
                time.sleep(drip)
        except OSError:  # the client gave up
            pass
        self.close_connection = True

    def _answer(self, record: dict, spec: Spec, op: str | None, status: int, body: Any) -> None:
        record["status"] = status
        if op is not None:
            try:
                spec.check_response(op, self.command, self.path, status, body)
            except SpecViolation as exc:
                self.emu.violations.append(f"response to {self.command} {self.path}: {exc}")
        try:
            self._send(status, body)
        except OSError:  # the client gave up (slow answers)
            pass

    do_GET = do_POST = do_PUT = do_DELETE = _handle
