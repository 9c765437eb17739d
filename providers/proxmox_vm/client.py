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
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from fediversity_providers import (
    AccessDenied,
    Conflict,
    InvalidInput,
    NotFound,
    ProviderError,
    Transient,
    Unreachable,
)

__all__ = ["PveClient", "parse_upid"]

GET_RETRIES = (0.2, 0.5, 1.0, 2.0)
EARLY_400_GRACE = 15.0  # seconds a fresh task's status may answer 400


def parse_upid(upid: str) -> dict[str, str]:
    """``UPID:node:pid:pstart:starttime:type:id:user:`` as a dict."""
    parts = upid.split(":")
    if len(parts) < 8 or parts[0] != "UPID":
        raise ProviderError(f"Proxmox VE answered {upid!r} where a task id (UPID) was expected")
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
                 log: Callable[[str], None] | None = None) -> None:
        base = url.rstrip("/")
        if not base.endswith("/api2/json"):
            base += "/api2/json"
        self.base = base
        self._auth = f"PVEAPIToken={token_id}={secret}"
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
        for delay in (*GET_RETRIES, None):
            try:
                return self.request("GET", path, params)
            except Transient as error:
                if delay is None:
                    raise
                self.log(f"GET {path}: {error}; retrying in {delay} s")
                time.sleep(delay)

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
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as error:
            raise self._error(what, error.code, error.reason, error.read()) from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise AccessDenied(f"{what}: the server's TLS certificate was refused: {reason.verify_message}",
                                   field="api.caFile",
                                   hint="set api.caFile to the cluster's CA (/etc/pve/pve-root-ca.pem), "
                                        "or api.verifyTls = false") from None
            raise Unreachable(f"{what}: cannot reach {self.base}: {reason}",
                              hint="check api.url and that the cluster is up") from None
        except (http.client.HTTPException, OSError) as error:
            raise Unreachable(f"{what}: the connection to {self.base} failed before an answer: "
                              f"{type(error).__name__}: {error}",
                              hint="the request may or may not have been carried out; retry") from None
        try:
            return json.loads(raw or b"{}").get("data")
        except (ValueError, AttributeError):
            raise ProviderError(f"{what}: the answer is not Proxmox VE's JSON: {raw[:200]!r}",
                                hint="check that api.url points at a Proxmox VE API") from None

    def _error(self, what: str, code: int, reason: str, raw: bytes) -> ProviderError:
        details = ""
        try:
            document = json.loads(raw or b"{}")
            errors = document.get("errors") or {}
            details = "; ".join(f"{key}: {str(text).strip()}" for key, text in sorted(errors.items()))
            if not details and document.get("message"):
                details = str(document["message"]).strip()
        except (ValueError, AttributeError):
            pass
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
            if status.get("status") == "stopped":
                exitstatus = str(status.get("exitstatus") or "")
                if exitstatus == "OK" or exitstatus.startswith("WARNINGS:"):
                    if exitstatus != "OK":
                        self.log(f"{label}: {exitstatus}")
                    return exitstatus
                raise self._task_failed(path, label, exitstatus or "no exit status")
            if time.monotonic() - started > timeout:
                raise Transient(f"{label} did not finish within {timeout:.0f} s (task {upid})",
                                hint="raise taskTimeoutSeconds, or look at the task in the Proxmox VE UI")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def _task_failed(self, path: str, label: str, exitstatus: str) -> ProviderError:
        tail = ""
        try:
            lines = self.get(path + "/log", start=0, limit=500) or []
            tail = " | ".join(str(line.get("t", "")) for line in lines[-5:] if line.get("t"))
        except ProviderError:
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
