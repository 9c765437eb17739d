"""A small client of Garage's admin API, v1 (Garage 1.x) and v2 (Garage 2.x) behind one interface.

Only what ``garage_bucket`` needs.  Answers are normalised to one shape:

- bucket: ``{"id", "globalAliases", "websiteAccess", "websiteConfig", "keys", "objects",
  "unfinishedUploads", "quotas"}`` with ``keys`` a list of
  ``{"accessKeyId", "name", "permissions": {"read", "write", "owner"}}``;
- key: ``{"accessKeyId", "name", "secretAccessKey"}``.

Failures: only a 404 means absent (the methods return None or raise NotFound);
5xx answers, timeouts and dropped connections are retried with exponential
backoff for ``retry_timeout`` seconds, then reported as Transient/Unreachable.
A non-idempotent request whose answer was lost is never blindly repeated: the
caller looks first (see ``Retrying`` in :mod:`.provider`).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from typing import Any, Callable

from fediversity_providers.core.errors import (
    AccessDenied,
    Conflict,
    InvalidInput,
    NotFound,
    ProtocolError,
    ProviderError,
    Transient,
    Unreachable,
)
from fediversity_providers.core.retry import is_retryable, retry
from fediversity_providers.core.untrusted import header_value, printable

__all__ = ["AdminClient", "AdminError", "Lost", "classify", "connect"]

PERMS = ("read", "write", "owner")


class AdminError(ProviderError):
    """An answer from Garage that is neither success nor retryable."""

    def __init__(self, status: int, code: str, message: str, operation: str) -> None:
        super().__init__(f"Garage answered {status} {code} to {operation}: {message}")
        self.status, self.code, self.operation = status, code, operation


class Lost(Transient):
    """A request may or may not have been carried out: its answer never came, or was a 5xx."""

    #: True when the server answered (a 5xx): it is not working on the request any more.
    answered = False


def classify(exc: AdminError) -> ProviderError:
    """The core's error kind for a final, non-retryable answer."""
    cls: type[ProviderError]
    if exc.status == 404:
        cls = NotFound
    elif exc.status == 409:
        cls = Conflict
    elif exc.status in (401, 403):
        cls = AccessDenied
    else:
        cls = InvalidInput if exc.status == 400 else ProviderError
    error = cls(exc.message, hint=_hint(exc.status))
    error.__cause__ = exc
    return error


def _hint(status: int) -> str | None:
    if status in (401, 403):
        return "check that adminTokenFile holds Garage's admin_token"
    return None


class Transport:
    """HTTP/1.1 requests with a bearer token, one connection per request.

    Each exchange (connect, send, the whole answer) ends within ``timeout``
    seconds and before ``deadline`` (a :func:`time.monotonic` instant, the
    request's), however slowly the server answers.  With a ``tunnel``, each
    request goes over its own SSH connection (:mod:`.tunnel`), within the same limits.
    """

    def __init__(self, endpoint: str, token: str, timeout: float, retry_timeout: float,
                 sleep: Callable[[float], None] = time.sleep, *, deadline: float | None = None,
                 log: Callable[[str], None] | None = None, tunnel: Any = None) -> None:
        url = urllib.parse.urlsplit(endpoint)
        self.scheme, self.netloc = url.scheme, url.netloc
        self.token = header_value(token, field="adminTokenFile")
        self.timeout, self.retry_timeout = timeout, retry_timeout
        self.sleep = sleep
        self.deadline = deadline
        self.log = log
        #: A :class:`.tunnel.Tunnel` when the API is reached over SSH, else None.
        self.tunnel = tunnel
        self.count = 0  # requests sent, for tests and benchmarks
        self.last = ""  # the operation of the latest call, named when its answer is malformed

    @property
    def remote(self) -> str:
        via = f" (through SSH to {self.tunnel.where})" if self.tunnel is not None else ""
        return f"Garage's admin API at {self.scheme}://{self.netloc}{via}"

    def limit(self) -> float:
        """Seconds the next exchange may take: the request timeout, cut by the deadline."""
        if self.deadline is None:
            return self.timeout
        return min(self.timeout, self.deadline - time.monotonic())

    def once(self, method: str, path: str, query: dict[str, str] | None, body: Any) -> tuple[int, Any]:
        """One request; (status, decoded JSON body or None).  Raises OSError / HTTPException.

        A 2xx answer that is not JSON raises :class:`ProtocolError`; an error
        answer that is not JSON keeps its (escaped, shortened) text as message.
        """
        from fediversity_providers.core.boundedhttp import exchange

        target = path
        if query:  # a flag such as ``?list`` goes without "="
            target += "?" + "&".join(
                urllib.parse.quote(k, safe="") + ("=" + urllib.parse.quote(v, safe="") if v != "" else "")
                for k, v in query.items()
            )
        if self.tunnel is not None:
            conn = self.tunnel.connection(self.netloc, self.timeout)
        else:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.netloc, timeout=self.timeout)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.count += 1
        status, _, raw = exchange(conn, method, target, body=data, headers=headers, limit=self.limit())
        try:
            decoded = json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError):
            if 200 <= status < 300:
                raise ProtocolError(f"{self.remote} answered {method} {path} with {status} and a body that is "
                                    f"not JSON: {printable(raw[:200].decode(errors='replace'), 200)}",
                                    hint="check that adminEndpoint points at Garage's admin API") from None
            decoded = {"code": "", "message": raw[:200].decode(errors="replace")}
        return status, decoded

    def call(self, operation: str, method: str, path: str, query: dict[str, str] | None = None,
             body: Any = None, *, absent_ok: bool = False, idempotent: bool = True) -> Any:
        """Send with bounded retries.  ``absent_ok``: a 404 returns None instead of raising.

        A request that is not ``idempotent`` is not repeated here: when its answer is
        lost or is a 5xx (the work may have been done anyway), :class:`Lost` is raised
        and the caller looks at the world before trying again (``_until`` in :mod:`.converge`).
        A refused connection is repeated whatever the request: nothing was sent.
        """
        self.last = operation

        def attempt() -> Any:
            failure = self._attempt(operation, method, path, query, body, absent_ok)
            if not isinstance(failure, ProviderError):
                return failure
            if not idempotent and not isinstance(failure, _Refused):
                lost = Lost(failure.message, hint="retry; the operation converges")
                lost.answered = isinstance(failure.__cause__, AdminError)  # a 5xx: the server is done
                lost.__cause__ = failure.__cause__
                raise lost
            raise failure

        return retry(attempt, window=self.retry_timeout, what=f"{operation} on {self.remote}",
                     deadline=self.deadline, retryable=_repeatable, log=self.log,
                     first_delay=0.05, max_delay=2.0, sleep=self.sleep)

    def _attempt(self, operation, method, path, query, body, absent_ok) -> Any:
        """The decoded answer, or the retryable failure (final answers raise AdminError)."""
        from fediversity_providers.core.boundedhttp import Overdue

        try:
            status, decoded = self.once(method, path, query, body)
        except ConnectionRefusedError as exc:  # nothing was sent: safe to repeat
            why = printable(exc) if self.tunnel is not None and exc.args else "connection refused"
            failure: ProviderError = _Refused(
                f"no answer from {self.remote} to {operation} ({why})",
                hint="check adminEndpoint and that Garage is running")
            failure.__cause__ = exc
            return failure
        except (OSError, http.client.HTTPException, Overdue) as exc:
            failure = Unreachable(
                f"no answer from {self.remote} to {operation} ({type(exc).__name__}: {printable(exc)})",
                hint="check adminEndpoint and that Garage is running",
            )
            failure.__cause__ = exc
            return failure
        if 200 <= status < 300:
            if decoded is None and absent_ok:  # a read answered "success" with nothing
                raise ProtocolError(f"{self.remote} answered {operation} with {status} and no document",
                                    hint="check that adminEndpoint points at Garage's admin API")
            return decoded
        info = decoded if isinstance(decoded, dict) else {}
        error = AdminError(status, printable(info.get("code", ""), 80), printable(info.get("message", "")),
                           operation)
        if status == 404 and absent_ok:
            return None
        if status < 500:
            raise error
        failure = Transient(str(error), hint="Garage kept failing; check its logs and retry")
        failure.__cause__ = error
        return failure


def _repeatable(error: BaseException) -> bool:
    """Transient failures are repeated, except a lost non-idempotent request (the caller looks first)."""
    return is_retryable(error) and not isinstance(error, Lost)


class _Answer:
    """Checks on the shape of one answer: Garage's answers are data from outside, not trusted.

    A wrong shape is a :class:`ProtocolError` that names the remote, the
    operation and the field, with the offending value escaped and shortened.
    """

    def __init__(self, remote: str, operation: str) -> None:
        self.remote, self.operation = remote, operation

    def wrong(self, where: str, what: str, value: Any) -> ProtocolError:
        return ProtocolError(f"{self.remote} answered {self.operation} with {where} {what}: "
                             f"{printable(repr(value), 120)}",
                             hint="the server is not a Garage admin API this provider understands; "
                                  "check adminEndpoint and adminApiVersion; nothing more was changed")

    def obj(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.wrong(where, "not an object", value)
        return value

    def items(self, value: Any, where: str, *, required: bool = False) -> list:
        if value is None and not required:
            return []
        if not isinstance(value, list):
            raise self.wrong(where, "not a list", value)
        return value

    def text(self, value: Any, where: str, *, empty: bool = False) -> str:
        if not isinstance(value, str) or (not value and not empty):
            raise self.wrong(where, "missing or not a string" if not empty else "not a string", value)
        return value

    def flag(self, value: Any, where: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.wrong(where, "not a boolean", value)
        return value

    def count(self, value: Any, where: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.wrong(where, "not a non-negative integer", value)
        return value


class _Refused(Unreachable):
    """The connection was refused: the request never reached Garage."""


class AdminClient:
    """The operations garage_bucket needs; subclasses map them to one API version."""

    version = ""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    # -- shared helpers -------------------------------------------------------------
    def _bucket(self, info: Any, operation: str | None = None) -> dict:
        """A bucket answer, checked and normalised; a malformed one is a ProtocolError."""
        a = _Answer(self.t.remote, operation or self.t.last)
        info = a.obj(info, "the answer")
        keys = []
        for i, key in enumerate(a.items(info.get("keys"), "keys")):
            key = a.obj(key, f"keys[{i}]")
            perms = a.obj(key.get("permissions") or {}, f"keys[{i}].permissions")
            keys.append({
                "accessKeyId": a.text(key.get("accessKeyId"), f"keys[{i}].accessKeyId"),
                "name": a.text(key.get("name", ""), f"keys[{i}].name", empty=True),
                "permissions": {p: a.flag(perms.get(p), f"keys[{i}].permissions.{p}") for p in PERMS},
            })
        quotas = a.obj(info.get("quotas") or {}, "quotas")
        website = info.get("websiteConfig")
        if website is not None:
            website = a.obj(website, "websiteConfig")
            for part in ("indexDocument", "errorDocument"):
                if website.get(part) is not None:
                    a.text(website[part], f"websiteConfig.{part}")
        return {
            "id": a.text(info.get("id"), "id"),
            "globalAliases": [a.text(x, f"globalAliases[{i}]")
                              for i, x in enumerate(a.items(info.get("globalAliases"), "globalAliases"))],
            "websiteAccess": a.flag(info.get("websiteAccess"), "websiteAccess"),
            "websiteConfig": website,
            "keys": keys,
            "objects": a.count(info.get("objects"), "objects") or 0,
            "unfinishedUploads": a.count(info.get("unfinishedUploads"), "unfinishedUploads") or 0,
            "quotas": {"maxSize": a.count(quotas.get("maxSize"), "quotas.maxSize"),
                       "maxObjects": a.count(quotas.get("maxObjects"), "quotas.maxObjects")},
        }

    def _key(self, info: Any, operation: str | None = None) -> dict:
        a = _Answer(self.t.remote, operation or self.t.last)
        info = a.obj(info, "the answer")
        secret = info.get("secretAccessKey")
        return {"accessKeyId": a.text(info.get("accessKeyId"), "accessKeyId"),
                "name": a.text(info.get("name", ""), "name", empty=True),
                "secretAccessKey": None if secret is None else a.text(secret, "secretAccessKey")}

    def _key_list(self, answer: Any) -> list[dict]:
        a = _Answer(self.t.remote, "ListKeys")
        out = []
        for i, k in enumerate(a.items(answer, "the answer", required=True)):
            k = a.obj(k, f"[{i}]")
            out.append({"id": a.text(k.get("id"), f"[{i}].id"), "name": a.text(k.get("name", ""), f"[{i}].name",
                                                                                 empty=True)})
        return out

    def raise_final(self, exc: AdminError) -> None:
        raise classify(exc)

    # -- interface (implemented per version) --------------------------------------------
    def get_bucket(self, *, id: str | None = None, alias: str | None = None) -> dict | None:
        raise NotImplementedError

    def create_bucket(self, alias: str) -> dict:
        raise NotImplementedError

    def update_bucket(self, id: str, *, quotas: dict | None = None, website: dict | None = None) -> dict:
        """``website`` is ``{"enabled", "indexDocument", "errorDocument"}``; absent parts stay."""
        raise NotImplementedError

    def delete_bucket(self, id: str) -> None:
        raise NotImplementedError

    def add_alias(self, id: str, alias: str) -> dict:
        raise NotImplementedError

    def remove_alias(self, id: str, alias: str) -> dict:
        raise NotImplementedError

    def set_permissions(self, id: str, key_id: str, *, allow: dict, deny: dict) -> None:
        """Allow the flags true in ``allow`` and deny those true in ``deny`` (one request each at most)."""
        if any(allow.get(p) for p in PERMS):
            self._perm("allow", id, key_id, allow)
        if any(deny.get(p) for p in PERMS):
            self._perm("deny", id, key_id, deny)

    def _perm(self, which: str, id: str, key_id: str, flags: dict) -> None:
        raise NotImplementedError

    def list_keys(self) -> list[dict]:
        """``[{"id", "name"}]``."""
        raise NotImplementedError

    def create_key(self, name: str) -> dict:
        raise NotImplementedError

    def get_key(self, id: str, *, secret: bool = False) -> dict | None:
        raise NotImplementedError

    def delete_key(self, id: str) -> None:
        raise NotImplementedError


class V1(AdminClient):
    """Garage 1.x: ``/v1/...`` REST-style endpoints."""

    version = "v1"

    def get_bucket(self, *, id=None, alias=None):
        query = {"id": id} if id else {"globalAlias": alias}
        info = self.t.call("GetBucketInfo", "GET", "/v1/bucket", query, absent_ok=True)
        return None if info is None else self._bucket(info)

    def create_bucket(self, alias):
        return self._bucket(self.t.call("CreateBucket", "POST", "/v1/bucket", None,
                                        {"globalAlias": alias}, idempotent=False))

    def update_bucket(self, id, *, quotas=None, website=None):
        body = _update_body(quotas, website)
        return self._bucket(self.t.call("UpdateBucket", "PUT", "/v1/bucket", {"id": id}, body))

    def delete_bucket(self, id):
        self.t.call("DeleteBucket", "DELETE", "/v1/bucket", {"id": id}, idempotent=False)

    def add_alias(self, id, alias):
        return self._bucket(self.t.call("PutBucketGlobalAlias", "PUT", "/v1/bucket/alias/global",
                                        {"id": id, "alias": alias}))

    def remove_alias(self, id, alias):
        return self._bucket(self.t.call("DeleteBucketGlobalAlias", "DELETE", "/v1/bucket/alias/global",
                                        {"id": id, "alias": alias}, idempotent=False))

    def _perm(self, which, id, key_id, flags):
        body = {"bucketId": id, "accessKeyId": key_id,
                "permissions": {p: bool(flags.get(p)) for p in PERMS}}
        self.t.call(f"{which.title()}BucketKey", "POST", f"/v1/bucket/{which}", None, body)

    def list_keys(self):
        return self._key_list(self.t.call("ListKeys", "GET", "/v1/key", {"list": ""}))

    def create_key(self, name):
        return self._key(self.t.call("AddKey", "POST", "/v1/key", {"list": ""}, {"name": name},
                                     idempotent=False))

    def get_key(self, id, *, secret=False):
        query = {"id": id}
        if secret:
            query["showSecretKey"] = "true"
        info = self.t.call("GetKey", "GET", "/v1/key", query, absent_ok=True)
        return None if info is None else self._key(info)

    def delete_key(self, id):
        self.t.call("DeleteKey", "DELETE", "/v1/key", {"id": id}, idempotent=False)


class V2(AdminClient):
    """Garage 2.x: ``/v2/<Operation>`` RPC-style endpoints."""

    version = "v2"

    def get_bucket(self, *, id=None, alias=None):
        query = {"id": id} if id else {"globalAlias": alias}
        info = self.t.call("GetBucketInfo", "GET", "/v2/GetBucketInfo", query, absent_ok=True)
        return None if info is None else self._bucket(info)

    def create_bucket(self, alias):
        return self._bucket(self.t.call("CreateBucket", "POST", "/v2/CreateBucket", None,
                                        {"globalAlias": alias}, idempotent=False))

    def update_bucket(self, id, *, quotas=None, website=None):
        body = _update_body(quotas, website)
        return self._bucket(self.t.call("UpdateBucket", "POST", "/v2/UpdateBucket", {"id": id}, body))

    def delete_bucket(self, id):
        self.t.call("DeleteBucket", "POST", "/v2/DeleteBucket", {"id": id}, idempotent=False)

    def add_alias(self, id, alias):
        return self._bucket(self.t.call("AddBucketAlias", "POST", "/v2/AddBucketAlias", None,
                                        {"bucketId": id, "globalAlias": alias}))

    def remove_alias(self, id, alias):
        return self._bucket(self.t.call("RemoveBucketAlias", "POST", "/v2/RemoveBucketAlias", None,
                                        {"bucketId": id, "globalAlias": alias}, idempotent=False))

    def _perm(self, which, id, key_id, flags):
        body = {"bucketId": id, "accessKeyId": key_id,
                "permissions": {p: True for p in PERMS if flags.get(p)}}
        self.t.call(f"{which.title()}BucketKey", "POST", f"/v2/{which.title()}BucketKey", None, body)

    def list_keys(self):
        return self._key_list(self.t.call("ListKeys", "GET", "/v2/ListKeys"))

    def create_key(self, name):
        return self._key(self.t.call("CreateKey", "POST", "/v2/CreateKey", None, {"name": name},
                                     idempotent=False))

    def get_key(self, id, *, secret=False):
        query = {"id": id}
        if secret:
            query["showSecretKey"] = "true"
        info = self.t.call("GetKeyInfo", "GET", "/v2/GetKeyInfo", query, absent_ok=True)
        return None if info is None else self._key(info)

    def delete_key(self, id):
        self.t.call("DeleteKey", "POST", "/v2/DeleteKey", {"id": id}, idempotent=False)


def _update_body(quotas: dict | None, website: dict | None) -> dict[str, Any]:
    """UpdateBucket's body, the same in v1 and v2: only the parts given change."""
    body: dict[str, Any] = {}
    if quotas is not None:
        body["quotas"] = {"maxSize": quotas.get("maxSize"), "maxObjects": quotas.get("maxObjects")}
    if website is not None:
        body["websiteAccess"] = _website_body(website)
    return body


def _website_body(website: dict) -> dict:
    if not website.get("enabled"):
        return {"enabled": False}
    body = {"enabled": True, "indexDocument": website["indexDocument"]}
    if website.get("errorDocument"):
        body["errorDocument"] = website["errorDocument"]
    return body


def detect(transport: Transport) -> str:
    """Ask the server which API it serves: v2 if it answers a v2 request, else v1."""
    try:
        transport.call("GetClusterHealth", "GET", "/v2/GetClusterHealth")
    except AdminError as exc:
        if exc.status in (401, 403):
            raise classify(exc) from exc
        if exc.status in (400, 404):
            return "v1"
        raise classify(exc) from exc
    return "v2"


def connect(endpoint: str, token: str, version: str = "auto", *, timeout: float = 10.0,
            retry_timeout: float = 60.0, deadline: float | None = None,
            log: Callable[[str], None] | None = None, tunnel: Any = None) -> AdminClient:
    """An admin client for ``endpoint``; ``version`` ``auto`` costs one request.

    ``deadline`` (a :func:`time.monotonic` instant) bounds every request and
    retry; ``log`` receives one line per retry; ``tunnel`` (a
    :class:`.tunnel.Tunnel`) carries every request over SSH, ``endpoint``
    being then as the SSH server's machine sees it.
    """
    transport = Transport(endpoint.rstrip("/"), token, timeout, retry_timeout, deadline=deadline, log=log,
                          tunnel=tunnel)
    if version == "auto":
        version = detect(transport)
    return (V2 if version == "v2" else V1)(transport)
