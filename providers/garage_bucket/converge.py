"""Converging a Garage bucket: keys found or made, permissions, aliases, quotas, website, S3 rules.

Used by :mod:`.provider`; the outputs are built here too, so that create,
update and read report the same shape.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from fediversity_providers.core.errors import Conflict, InvalidInput, NotFound

from .admin import PERMS, AdminClient, AdminError, Lost

#: Inputs that change how a create works, not what it makes: left out of the creation token.
NOT_IN_TOKEN = ("requestTimeout", "retryTimeout", "adoptExisting", "forceDestroy", "adminTokenFile",
                "adminApiVersion", "ssh")


def creation_token(inputs: dict) -> str:
    """12 hex digits derived from a create's inputs: the same when NixOps4 sends that create again."""
    import hashlib

    what = {k: v for k, v in inputs.items() if k not in NOT_IN_TOKEN}
    return hashlib.sha256(json.dumps(what, sort_keys=True, ensure_ascii=True).encode()).hexdigest()[:12]


def key_name(alias: str, name: str, token: str) -> str:
    """The name of a key this resource creates: unambiguous, ':' being in neither part."""
    return f"{alias}:{name}:{token}"



def _until(deadline: float, attempt, check, settle: float = 0.0):
    """``attempt()`` a request that must not be blindly repeated.

    When its answer is lost (or is a 5xx), ``check()`` whether it happened before
    trying again.  A request that timed out may still be under way on the server,
    so ``check()`` is repeated, with backoff, for ``settle`` seconds (the request
    timeout: as long again as we waited for the answer) before the request is
    sent again; all of it until ``deadline``.
    """
    delay = 0.05
    while True:
        try:
            return attempt()
        except Lost as lost:
            settled = min(deadline, time.monotonic() + (0.0 if lost.answered else settle))
            poll = 0.05
            while True:
                found = check()
                if found is not None:
                    return found
                left = settled - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, poll))
                poll = min(poll * 2, 1.0)
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


# -- outputs -----------------------------------------------------------------------------
def website_view(bucket: dict) -> dict:
    config = bucket.get("websiteConfig") or {}
    if not bucket["websiteAccess"]:
        return {"enable": False, "indexDocument": None, "errorDocument": None}
    return {"enable": True, "indexDocument": config.get("indexDocument"),
            "errorDocument": config.get("errorDocument")}


def website_endpoint(alias: str, website: dict, inputs_website: dict) -> str | None:
    domain = inputs_website.get("rootDomain")
    if not website["enable"] or not domain:
        return None
    return f"http://{alias}.{domain.lstrip('.')}"


def outputs(inputs: dict, bucket: dict, alias: str, keys: dict, cors: list, lifecycle: list,
            token: str | None = None) -> dict:
    perms = {k["accessKeyId"]: k["permissions"] for k in bucket["keys"]}
    key_out = {}
    for name, key in keys.items():
        p = perms.get(key["accessKeyId"], {})
        key_out[name] = {"accessKeyId": key["accessKeyId"], "secretAccessKey": key.get("secretAccessKey"),
                         **{f: bool(p.get(f)) for f in PERMS}, "created": bool(key.get("created"))}
    website = website_view(bucket)
    extra = {} if token is None else {"creationToken": token}
    return {
        **extra,
        "bucketId": bucket["id"],
        "globalAlias": alias,
        "s3Endpoint": inputs["s3Endpoint"],
        "region": inputs.get("region", "garage"),
        "keys": key_out,
        "quotas": dict(bucket["quotas"]),
        "website": website,
        "websiteEndpoint": website_endpoint(alias, website, inputs.get("website") or {}),
        "cors": cors,
        "lifecycle": lifecycle,
    }


# -- keys ----------------------------------------------------------------------------------
class Keys:
    """Resolves key entries to Garage keys, creating the missing ones (and remembering which)."""

    def __init__(self, client: AdminClient, ctx, deadline: float, token: str) -> None:
        self.c, self.ctx, self.deadline, self.token = client, ctx, deadline, token
        self._listing: list[dict] | None = None
        self.made: list[str] = []  # created by this run, removed again when it fails

    def _by_name(self, name: str, fresh: bool = False) -> str | None:
        if self._listing is None or fresh:
            self._listing = self.c.list_keys()
        for key in self._listing:
            if key["name"] == name:
                return key["id"]
        return None

    def _secret(self, key_id: str, field: str) -> dict:
        info = self.c.get_key(key_id, secret=True)
        if info is None:
            raise NotFound(f"access key {key_id} does not exist", field=field,
                           hint="create it in Garage, or drop accessKeyId to let this resource create one")
        self.ctx.add_secret(info.get("secretAccessKey"))
        return info

    def resolve(self, alias: str, entry: dict, field: str) -> dict:
        """``{"accessKeyId", "secretAccessKey", "created"}`` for one entry of ``keys``."""
        if entry.get("accessKeyId"):
            info = self._secret(entry["accessKeyId"], f"{field}.accessKeyId")
            return {"accessKeyId": info["accessKeyId"], "secretAccessKey": info["secretAccessKey"],
                    "created": False}
        name = key_name(alias, entry["name"], self.token)
        existing = self._by_name(name)
        if existing is not None:  # left by an interrupted run of this same create: ours by its name
            info = self._secret(existing, field)
        else:
            def look():
                found = self._by_name(name, fresh=True)
                return None if found is None else self._secret(found, field)

            info = _until(self.deadline, lambda: self.c.create_key(name), look, self.c.t.timeout)
            self.ctx.add_secret(info.get("secretAccessKey"))
            self.made.append(info["accessKeyId"])
        return {"accessKeyId": info["accessKeyId"], "secretAccessKey": info["secretAccessKey"], "created": True}

    def delete(self, key_id: str) -> None:
        def look():
            return True if self.c.get_key(key_id) is None else None

        try:
            _until(self.deadline, lambda: self.c.delete_key(key_id), look, self.c.t.timeout)
        except AdminError as exc:
            if exc.status != 404:
                raise


# -- converging ----------------------------------------------------------------------------
def converge_bucket(c: AdminClient, bucket: dict, inputs: dict, keys: dict, old_alias: str | None,
                    deadline: float) -> dict:
    """Aliases, permissions, quotas and website of ``bucket`` as ``inputs`` say; the new bucket view."""
    alias = inputs["globalAlias"]
    if alias not in bucket["globalAliases"]:
        try:
            bucket = c.add_alias(bucket["id"], alias)
        except AdminError as exc:
            if exc.status in (400, 409):
                raise Conflict(f"the global alias {alias!r} is taken by another bucket", field="globalAlias",
                               hint="choose another globalAlias, or remove that alias first") from None
            raise
    if old_alias and old_alias != alias and old_alias in bucket["globalAliases"]:
        bucket_id = bucket["id"]

        def removed():
            now = c.get_bucket(id=bucket_id)
            return now if now is not None and old_alias not in now["globalAliases"] else None

        bucket = _until(deadline, lambda: c.remove_alias(bucket_id, old_alias), removed, c.t.timeout)
    view = {k["accessKeyId"]: k for k in bucket["keys"]}
    wanted = {e["name"]: e for e in inputs["keys"]}
    changed = False
    for name, key in keys.items():
        have = view.get(key["accessKeyId"], {}).get("permissions", {})
        want = wanted[name]
        allow = {p: True for p in PERMS if want[p] and not have.get(p)}
        deny = {p: True for p in PERMS if not want[p] and have.get(p)}
        if allow or deny:
            c.set_permissions(bucket["id"], key["accessKeyId"], allow=allow, deny=deny)
            view[key["accessKeyId"]] = {"accessKeyId": key["accessKeyId"], "name": "",
                                        "permissions": {p: bool(want[p]) for p in PERMS}}
            changed = True
    if changed:  # the permissions as now set, without asking again
        bucket = dict(bucket, keys=list(view.values()))
    quotas = {"maxSize": inputs["quotas"].get("maxSize"), "maxObjects": inputs["quotas"].get("maxObjects")}
    site = inputs["website"]
    want_site = {"enable": site["enable"], "indexDocument": site["indexDocument"] if site["enable"] else None,
                 "errorDocument": site.get("errorDocument") if site["enable"] else None}
    update: dict[str, Any] = {}
    if bucket["quotas"] != quotas:
        update["quotas"] = quotas
    if website_view(bucket) != want_site:
        update["website"] = {"enabled": site["enable"], "indexDocument": site["indexDocument"],
                             "errorDocument": site.get("errorDocument")}
    if update:
        bucket = c.update_bucket(bucket["id"], **update)
    return bucket


def s3_for(inputs: dict, keys: dict, *, need: tuple[str, ...] = ("owner",)):
    from .s3 import S3

    wanted = {e["name"]: e for e in inputs["keys"]}
    for name, key in keys.items():
        entry = wanted.get(name, key)
        if all(entry.get(p) for p in need) and key.get("secretAccessKey"):
            return S3(inputs["s3Endpoint"], inputs.get("region", "garage"), key["accessKeyId"], key["secretAccessKey"])
    return None


def normal_cors(rules: list[dict]) -> list[dict]:
    """Input rules in the shape :func:`parse_cors` gives."""
    keys = ("id", "allowedOrigins", "allowedMethods", "allowedHeaders", "exposeHeaders", "maxAgeSeconds")
    defaults = {"id": None, "allowedHeaders": [], "exposeHeaders": [], "maxAgeSeconds": None}
    return [{k: rule.get(k, defaults.get(k)) for k in keys} for rule in rules]


def normal_lifecycle(rules: list[dict]) -> list[dict]:
    return [{
        "id": rule["id"],
        "enabled": rule.get("enabled", True),
        "prefix": rule.get("prefix") or "",
        "expirationDays": rule.get("expirationDays"),
        "abortIncompleteMultipartUploadDays": rule.get("abortIncompleteMultipartUploadDays"),
    } for rule in rules]


def converge_s3(inputs: dict, keys: dict, alias: str, old_cors: list, old_lifecycle: list,
                *, observe: bool = False) -> tuple[list, list]:
    """CORS and lifecycle rules as ``inputs`` say, compared with the old ones (or, with
    ``observe``, with what S3 reports now, when there are rules and a key that may read them)."""
    cors, lifecycle = normal_cors(inputs["cors"]), normal_lifecycle(inputs["lifecycle"])
    if observe and (cors or lifecycle or old_cors or old_lifecycle):
        s3 = s3_for(inputs, keys)
        if s3 is not None:
            old_cors, old_lifecycle = s3.get_cors(alias), s3.get_lifecycle(alias)
    if cors == old_cors and lifecycle == old_lifecycle:
        return cors, lifecycle
    s3 = s3_for(inputs, keys)
    if s3 is None:  # only reachable when clearing rules after the owner key went away
        raise InvalidInput("changing CORS or lifecycle rules needs a key with owner = true", field="keys",
                           hint="add owner = true to one entry of keys")
    if cors != old_cors:
        s3.set_cors(alias, cors)
    if lifecycle != old_lifecycle:
        s3.set_lifecycle(alias, lifecycle)
    return cors, lifecycle
