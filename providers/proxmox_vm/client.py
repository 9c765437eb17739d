"""A small Proxmox VE API client on the standard library.

Why not proxmoxer: it needs requests (urllib3, charset detection, idna) for
what is here a few dozen lines of urllib, and it leaves the parts that matter
to us to the caller anyway: mapping Proxmox's answers to error kinds a
deployer acts on, retrying only what is safe to retry, and polling tasks
through their early hiccups.  Imported only when a request uses the ``api``
backend, so the provider's cold start does not pay for it.

Proxmox's conventions handled here: API-token auth in one header (no CSRF
token), every answer wrapped as ``{"data": ...}``, the error text in the
HTTP reason phrase and parameter errors in ``{"errors": {...}}``, form
encoding for POST/PUT with booleans as 1/0, task ids (UPIDs) polled until
``status = stopped``.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.parse
from typing import Any, Callable

from fediversity_providers import (
    AccessDenied,
    Conflict,
    InvalidInput,
    NotFound,
    ProtocolError,
    ProviderError,
    Transient,
    Unreachable,
)
from fediversity_providers.core.retry import retry
from fediversity_providers.core.untrusted import header_value, printable

__all__ = ["PveClient", "parse_upid"]

GET_RETRIES = (0.2, 0.5, 1.0, 2.0)  # the delays between the attempts of a read
GET_WINDOW = sum(GET_RETRIES) + 0.5
EARLY_400_GRACE = 15.0  # seconds a fresh task's status may answer 400


def parse_upid(upid: str) -> dict[str, str]:
    """``UPID:node:pid:pstart:starttime:type:id:user:`` as a dict."""
    parts = upid.split(":")
    if len(parts) < 8 or parts[0] != "UPID":
        raise ProtocolError(f"Proxmox VE answered {printable(repr(upid), 120)} where a task id (UPID) was expected",
                            hint="check that api.url points at a Proxmox VE API")
    return {"node": parts[1], "type": parts[5], "id": parts[6], "user": parts[7]}


def _encode(params: dict[str, Any] | None) -> str:
    pairs = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        pairs.append((key, str(value)))
    return urllib.parse.urlencode(pairs)


class PveClient:
    """Requests to one Proxmox VE API endpoint, authenticated with an API token."""

    def __init__(self, url: str, token_id: str, secret: str, *, verify_tls: bool = True,
                 ca_file: str | None = None, timeout: float = 30.0,
                 log: Callable[[str], None] | None = None, deadline: float | None = None) -> None:
        base = url.rstrip("/")
        if not base.endswith("/api2/json"):
            base += "/api2/json"
        self.base = base
        self._auth = header_value(f"PVEAPIToken={token_id}={secret}", field="api.tokenSecretFile")
        self.deadline = deadline
        self.token_id = token_id
        self.timeout = timeout
        self.log = log or (lambda message: None)
        self._ssl: ssl.SSLContext | None = None
        if base.startswith("https:"):
            self._ssl = ssl.create_default_context(cafile=ca_file)
            if not verify_tls:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE

    # -- requests -----------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        """GET, retried on temporary failures (reading is always safe to repeat)."""
        return retry(lambda: self.request("GET", path, params), window=GET_WINDOW, what=f"GET {path}",
                     deadline=self.deadline, log=self.log, first_delay=GET_RETRIES[0], max_delay=GET_RETRIES[-1])

    def post(self, path: str, **params: Any) -> Any:
        return self.request("POST", path, params)

    def put(self, path: str, **params: Any) -> Any:
        return self.request("PUT", path, params)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params)

    def request(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """One request; the answer's ``data``, or the core's error kind for a failure."""
        url = self.base + path
        body = None
        encoded = _encode(params)
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        if method in ("GET", "DELETE"):
            if encoded:
                url += "?" + encoded
        else:
            body = encoded.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        what = f"{method} {path}"
        split = urllib.parse.urlsplit(url)
        if split.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(split.netloc, timeout=self.timeout,
                                                                           context=self._ssl)
        else:
            conn = http.client.HTTPConnection(split.netloc, timeout=self.timeout)
        target = split.path + (f"?{split.query}" if split.query else "")
        from fediversity_providers.core.boundedhttp import Overdue, exchange

        limit = self.timeout if self.deadline is None else min(self.timeout, self.deadline - time.monotonic())
        try:
            status, reason, raw = exchange(conn, method, target, body=body, headers=headers, limit=limit)
        except ssl.SSLCertVerificationError as reason:
            raise AccessDenied(f"{what}: the server's TLS certificate was refused: {reason.verify_message}",
                               field="api.caFile",
                               hint="set api.caFile to the cluster's CA (/etc/pve/pve-root-ca.pem), "
                                    "or api.verifyTls = false") from None
        except Overdue as error:
            raise Unreachable(f"{what}: {self.base} gave {error}",
                              hint="the request may or may not have been carried out; retry") from None
        except (ConnectionRefusedError, socket.gaierror) as error:
            raise Unreachable(f"{what}: cannot reach {self.base}: {printable(error)}",
                              hint="check api.url and that the cluster is up") from None
        except (http.client.HTTPException, OSError) as error:
            raise Unreachable(f"{what}: the connection to {self.base} failed before an answer: "
                              f"{type(error).__name__}: {printable(error)}",
                              hint="the request may or may not have been carried out; retry") from None
        if status >= 400:
            raise self._error(what, status, printable(reason, 200), raw)
        try:
            document = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            document = None
        if not isinstance(document, dict):
            raise ProtocolError(f"{what}: the answer of {self.base} is not Proxmox VE's JSON: "
                                f"{printable(repr(raw[:200]), 250)}",
                                hint="check that api.url points at a Proxmox VE API") from None
        return document.get("data")

    def _error(self, what: str, code: int, reason: str, raw: bytes) -> ProviderError:
        details = ""
        try:
            document = json.loads(raw or b"{}")
            errors = document.get("errors") or {}
            details = "; ".join(f"{key}: {str(text).strip()}" for key, text in sorted(errors.items()))
            if not details and document.get("message"):
                details = str(document["message"]).strip()
        except (ValueError, AttributeError, TypeError, RecursionError):
            pass
        details = printable(details)
        message = f"{what}: HTTP {code} {reason}".rstrip() + (f" ({details})" if details else "")
        lowered = f"{reason} {details}".lower()
        if code == 401:
            return AccessDenied(message, field="api.tokenId",
                                hint="check api.tokenId and the secret in api.tokenSecretFile")
        if code == 403:
            return AccessDenied(message, hint=f"grant the token {self.token_id} the permission named")
        if "does not exist" in lowered or "no such" in lowered or code == 404:
            return NotFound(message)
        if "already exists" in lowered:
            return Conflict(message)
        if code == 400:
            return InvalidInput(message)
        if code in (502, 503, 504) or "timeout" in lowered or "can't lock" in lowered:
            return Transient(message, hint="retry later")
        if code >= 595:  # pveproxy could not reach the node
            return Unreachable(message, hint="a node of the cluster is unreachable; retry later")
        return ProviderError(message)

    # -- tasks --------------------------------------------------------------------

    def wait_task(self, upid: Any, timeout: float, *, what: str = "") -> str:
        """Wait for task ``upid`` to end; its exit status (``OK`` or ``WARNINGS: ...``).

        Proxmox may answer 400 for a task created a moment ago: tolerated for a
        few seconds.  A failed task raises, with its exit status and log tail.
        """
        if not upid:  # some calls finish synchronously on some versions
            return "OK"
        task = parse_upid(str(upid))
        path = f"/nodes/{task['node']}/tasks/{urllib.parse.quote(str(upid), safe='')}"
        label = what or f"task {task['type']} {task['id']}".strip()
        started = time.monotonic()
        delay = 0.05
        while True:
            try:
                status = self.get(path + "/status")
            except (InvalidInput, NotFound):  # the early 400 ("no such task")
                if time.monotonic() - started > EARLY_400_GRACE:
                    raise
                status = {"status": "running"}
            if not isinstance(status, dict):
                raise ProtocolError(f"{label}: the task status of {self.base} is not an object: "
                                    f"{printable(repr(status), 120)}", hint="check that api.url points at Proxmox VE")
            if status.get("status") == "stopped":
                exitstatus = printable(status.get("exitstatus") or "", 300)
                if exitstatus == "OK" or exitstatus.startswith("WARNINGS:"):
                    if exitstatus != "OK":
                        self.log(f"{label}: {exitstatus}")
                    return exitstatus
                raise self._task_failed(path, label, exitstatus or "no exit status")
            if time.monotonic() - started > timeout or (self.deadline is not None
                                                        and time.monotonic() + delay > self.deadline):
                raise Transient(f"{label} did not finish within {timeout:.0f} s (task {upid})",
                                hint="raise taskTimeoutSeconds, or look at the task in the Proxmox VE UI")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def _task_failed(self, path: str, label: str, exitstatus: str) -> ProviderError:
        tail = ""
        try:
            lines = self.get(path + "/log", start=0, limit=500) or []
            tail = printable(" | ".join(str(line.get("t", "")) for line in lines[-5:] if line.get("t")), 500)
        except (ProviderError, AttributeError, TypeError):
            pass
        message = f"{label} failed: {exitstatus}" + (f"; log: {tail}" if tail else "")
        lowered = exitstatus.lower()
        if "already exists" in lowered:
            return Conflict(message)
        if "does not exist" in lowered:
            return NotFound(message)
        if "timeout" in lowered or "can't lock" in lowered:
            return Transient(message, hint="retry later")
        return ProviderError(message)
