"""Garage's S3 permissions in front of moto.

moto serves S3 but checks no credentials.  :class:`S3Gate` is a small HTTP
proxy on 127.0.0.1 that, like Garage, lets a request through only when the
access key in its signature has the permission it needs on the bucket, as the
emulator's state says: ``read`` to list and get, ``write`` to put, delete and
upload, ``owner`` for the bucket's CORS, lifecycle and website documents.
Buckets are made and deleted through the admin API only, as on Garage.
"""

from __future__ import annotations

import http.client
import http.server
import re
import threading
import urllib.parse
from typing import Any, Protocol

__all__ = ["S3Gate", "Permissions"]

_OWNER = {"cors", "lifecycle", "website", "policy", "acl"}
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def needed(method: str, path: str, query: dict[str, str]) -> str | None:
    """The permission a request needs (``None``: refused whatever the key)."""
    bucket, _, key = path.lstrip("/").partition("/")
    if _OWNER & set(query):
        return "owner"
    if not key:
        if method in ("PUT", "DELETE") or not bucket:
            return None  # buckets come and go through the admin API
        if method == "POST":
            return "write" if "delete" in query else None
        return "read"
    return "read" if method in ("GET", "HEAD") else "write"


def access_key(headers, query: dict[str, str]) -> str | None:
    found = re.search(r"Credential=([^/,\s]+)/", headers.get("Authorization", ""))
    if found:
        return found.group(1)
    credential = query.get("X-Amz-Credential", "")
    return credential.split("/", 1)[0] or None


class Permissions(Protocol):
    """What the gate reads of Garage's state (the emulator's ``GarageEmulator`` is one).

    Declared here rather than imported, so that the gate does not import the
    emulator that starts it.
    """

    lock: Any
    keys: dict[str, dict]

    def bucket_by_alias(self, alias: str) -> dict | None: ...


class S3Gate:
    """Checks each S3 request against ``emulator``'s keys and permissions, then forwards it to ``upstream``."""

    def __init__(self, emulator: Permissions, upstream: str, port: int = 0) -> None:
        self.emulator = emulator
        self.upstream = urllib.parse.urlsplit(upstream).netloc
        self.refused: list[str] = []
        gate = self

        class Handler(_Handler):
            pass

        Handler.gate = gate
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def allowed(self, method: str, target: str, headers) -> tuple[bool, str]:
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        permission = needed(method, url.path, query)
        bucket_name = urllib.parse.unquote(url.path.lstrip("/").partition("/")[0])
        key_id = access_key(headers, query)
        emu = self.emulator
        with emu.lock:
            bucket = emu.bucket_by_alias(bucket_name)
            if bucket is None:
                return True, ""  # moto answers NoSuchBucket
            if key_id not in emu.keys:
                return False, f"unknown access key {key_id}"
            perms = bucket["perms"].get(key_id, {})
        if permission is None or not perms.get(permission):
            return False, f"{key_id} may not {method} {url.path}?{url.query} (needs {permission or 'the admin API'})"
        return True, ""

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    gate: S3Gate
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        ok, why = self.gate.allowed(self.command, self.path, self.headers)
        if not ok:
            self.gate.refused.append(why)
            data = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                    f"<Message>Forbidden: {why}</Message></Error>").encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        conn = http.client.HTTPConnection(self.gate.upstream, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        self.send_response(response.status)
        for k, v in response.getheaders():
            if k.lower() not in _HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
