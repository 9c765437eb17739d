"""garage_bucket's work: converge a Garage bucket, its keys and settings.

Imported by the resource type's methods on first use (it pulls in the admin
client; minio comes later still, only when S3 is needed).

Idempotence and orphans:

- A create carries a *creation token*: 12 hex digits of a hash of its inputs
  (timeouts and ``adoptExisting``/``forceDestroy`` left out), the same for a
  create that NixOps4 sends again after the answer was lost.  Keys this
  resource creates are named ``<globalAlias>:<name>:<token>`` (':' appears in
  neither an alias nor an entry name, so two resources never share a name),
  and are looked up by that name before one is created: a retried create
  reuses the keys the interrupted one made, and never a key someone else made.
- The bucket is looked up by its alias before it is created.  It is this
  create's own (a retry's) only when a key named with this create's token is
  allowed on it; any other bucket holding the alias is refused with a
  Conflict naming ``adoptExisting``.  When ``CreateBucket``'s answer is lost,
  the bucket found afterwards under the alias is taken as the one this
  request made only if it holds no key of another resource.
- When a create fails after the bucket or keys were made, what this attempt
  made is removed again before the error is reported.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from typing import Iterator

from fediversity_providers.core.errors import Conflict, InvalidInput, NotFound, ProviderError
from fediversity_providers.core.untrusted import header_value

from . import admin as adminmod
from .admin import PERMS, AdminClient, AdminError
from .converge import Keys, _until, converge_bucket, converge_s3, creation_token, outputs, s3_for

FORCE_DESTROY_KEY = "force-destroy.tmp"  # no entry of keys can be named so (no "." allowed)
#: Seconds the roll-back of a failed create may take past the request's deadline.
ROLLBACK_GRACE = 2.0


# -- inputs ------------------------------------------------------------------------------
def check_alias(alias: str) -> None:
    """S3 bucket naming rules beyond the schema's pattern (no request is sent before)."""
    problems = []
    if ".." in alias or ".-" in alias or "-." in alias:
        problems.append("has '..', '.-' or '-.'")
    with contextlib.suppress(ValueError):
        ipaddress.IPv4Address(alias)
        problems.append("looks like an IP address")
    if alias.startswith(("xn--", "sthree-")) or alias.endswith(("-s3alias", "--ol-s3")):
        problems.append("uses a reserved prefix or suffix")
    if problems:
        raise InvalidInput(f"{alias!r} is not a valid S3 bucket name: " + ", ".join(problems),
                           field="globalAlias",
                           hint="use 3-63 lowercase letters, digits, '-' and '.', like a DNS label")


def check_inputs(inputs: dict) -> None:
    check_alias(inputs["globalAlias"])
    names: set[str] = set()
    ids: set[str] = set()
    for i, key in enumerate(inputs["keys"]):
        if key["name"] in names:
            raise InvalidInput(f"key name {key['name']!r} appears twice", field=f"keys[{i}].name",
                               hint="give each entry its own name")
        names.add(key["name"])
        if key.get("accessKeyId"):
            if key["accessKeyId"] in ids:
                raise InvalidInput("the same accessKeyId is given twice", field=f"keys[{i}].accessKeyId",
                                   hint="list each existing key once")
            ids.add(key["accessKeyId"])
    if (inputs["cors"] or inputs["lifecycle"]) and not any(k["owner"] for k in inputs["keys"]):
        raise InvalidInput("CORS and lifecycle rules are set over S3 and need a key with owner = true",
                           field="keys", hint="add owner = true to one entry of keys")
    for i, rule in enumerate(inputs["lifecycle"]):
        if rule.get("expirationDays") is None and rule.get("abortIncompleteMultipartUploadDays") is None:
            raise InvalidInput("a lifecycle rule needs expirationDays or abortIncompleteMultipartUploadDays",
                               field=f"lifecycle[{i}]", hint="Garage supports only these two actions")


def read_token(inputs: dict, ctx) -> str:
    """The admin token: one line of a regular file (a FIFO or a device is refused, never waited on)."""
    from fediversity_providers.core.secretfile import read_secret_file

    token = read_secret_file(inputs["adminTokenFile"], field="adminTokenFile").strip()
    ctx.add_secret(token)
    header_value(token, field="adminTokenFile")
    return token


def tunnel_of(inputs: dict, ctx, endpoint: str | None = None):
    """The SSH tunnel to the admin API when ``ssh`` is given (paramiko loads only then), else None.

    Checked before anything is sent: the host and user, the pinned host key,
    the private key file, and that ``endpoint`` is plain HTTP (SSH encrypts it).
    """
    if not inputs.get("ssh"):
        return None
    plain_http(endpoint or inputs["adminEndpoint"])
    from .tunnel import Tunnel

    return Tunnel(inputs["ssh"], ctx)


def plain_http(endpoint: str, field: str = "adminEndpoint") -> None:
    """An endpoint reached through the SSH tunnel: ``http://`` on the SSH machine's own loopback.

    TLS cannot run over the channel here, and the SSH connection encrypts the
    exchange only as far as that machine: an endpoint beyond its loopback
    would carry the admin token across the network in clear from there.
    """
    from urllib.parse import urlsplit

    if not endpoint.startswith("http://"):
        raise InvalidInput(f"with ssh, the admin endpoint must be http://, not {endpoint.split(':', 1)[0]}://",
                           field=field,
                           hint="give the admin API as the Garage machine sees it, e.g. http://127.0.0.1:3903; "
                                "the SSH connection already encrypts and authenticates it; nothing was changed")
    host = (urlsplit(endpoint).hostname or "").lower()
    if not (host == "localhost" or host == "::1" or host.startswith("127.")):
        raise InvalidInput(
            f"with ssh, the admin endpoint must be on the SSH machine's own loopback, not {host!r}: beyond it the "
            "admin token would cross the network in clear", field=field,
            hint="give http://127.0.0.1:<port> of the machine ssh names; for another node, name it by its machine "
                 "(its own ssh) so that its own tunnel is used, or drop ssh and reach the admin API over https; "
                 "nothing was changed")


def connect(inputs: dict, ctx) -> AdminClient:
    tunnel = tunnel_of(inputs, ctx)
    token = read_token(inputs, ctx)
    return adminmod.connect(inputs["adminEndpoint"], token, inputs.get("adminApiVersion", "auto"),
                            timeout=inputs.get("requestTimeout", 10), retry_timeout=inputs.get("retryTimeout", 60),
                            deadline=getattr(ctx, "deadline", None), log=lambda line: ctx.log("%s", line),
                            tunnel=tunnel)


def work_deadline(inputs: dict, ctx) -> float:
    """When converging must end: ``retryTimeout`` from now, cut by the request's deadline."""
    deadline = time.monotonic() + inputs.get("retryTimeout", 60)
    if getattr(ctx, "deadline", None) is not None:
        deadline = min(deadline, ctx.deadline)
    return deadline


def owned_by(bucket: dict, alias: str, token: str) -> bool:
    """Whether ``bucket`` carries the marks of the create with ``token``: a key it made is allowed on it."""
    return any(k["name"].startswith(f"{alias}:") and k["name"].endswith(f":{token}") for k in bucket["keys"])


@contextlib.contextmanager
def admin_errors() -> Iterator[None]:
    """Turn Garage's final answers into the core's error kinds."""
    try:
        yield
    except AdminError as exc:
        if exc.status == 400 and exc.operation in ("DeleteBucket", "DeleteKey") and exc.code != "BucketNotEmpty":
            raise InvalidInput(str(exc), field="adminApiVersion",
                               hint="Garage 2.x refuses v1's deletes: set adminApiVersion to v2 or auto") from None
        raise adminmod.classify(exc) from None


# -- operations ----------------------------------------------------------------------------
def create(inputs: dict, ctx) -> dict:
    check_inputs(inputs)
    alias = inputs["globalAlias"]
    c = connect(inputs, ctx)
    deadline = work_deadline(inputs, ctx)
    token = creation_token(inputs)
    keys_r = Keys(c, ctx, deadline, token)
    made_bucket: str | None = None
    with admin_errors():
        existing = c.get_bucket(alias=alias)
        if existing is not None and not inputs["adoptExisting"]:
            if not owned_by(existing, alias, token):
                raise taken(alias, existing["id"])
            ctx.progress("adopting", f"bucket {existing['id']}, made by an earlier attempt of this create")
        try:
            keys = {e["name"]: keys_r.resolve(alias, e, f"keys[{i}]") for i, e in enumerate(inputs["keys"])}
            bucket = existing
            if bucket is None:
                ctx.progress("creating bucket", alias)
                sent = [False]

                def look():
                    found = c.get_bucket(alias=alias)
                    return found if found is not None and mine_after_lost(found, alias, token) else None

                bucket = _until(deadline, lambda: _create_bucket(c, alias, token, sent), look, c.t.timeout)
                made_bucket = bucket["id"]
            bucket = converge_bucket(c, bucket, inputs, keys, None, deadline)
            cors, lifecycle = converge_s3(inputs, keys, alias, [], [], observe=existing is not None)
        except BaseException:
            _roll_back(c, made_bucket, keys_r, ctx, deadline)
            raise
    return outputs(inputs, bucket, alias, keys, cors, lifecycle, token)


def taken(alias: str, bucket_id: str) -> Conflict:
    return Conflict(f"the global alias {alias!r} already names bucket {bucket_id}, which this create did not make",
                    field="globalAlias",
                    hint="set adoptExisting = true to take that bucket over, or choose another globalAlias; "
                         "nothing was changed")


def mine_after_lost(bucket: dict, alias: str, token: str) -> bool:
    """After our CreateBucket's answer was lost: the bucket under the alias is ours unless another
    resource's key is on it (a concurrent create would have granted its keys)."""
    return owned_by(bucket, alias, token) or not bucket["keys"]


def _create_bucket(c: AdminClient, alias: str, token: str, sent: list) -> dict:
    first = not sent[0]
    sent[0] = True
    try:
        return c.create_bucket(alias)
    except AdminError as exc:
        if exc.status == 409:  # taken: by an earlier attempt whose answer was lost, or by another resource
            found = c.get_bucket(alias=alias)
            if found is not None and (owned_by(found, alias, token)
                                      or (not first and mine_after_lost(found, alias, token))):
                return found
            raise taken(alias, found["id"] if found else "(gone again)") from None
        raise


def _roll_back(c: AdminClient, bucket_id: str | None, keys_r: Keys, ctx, deadline: float) -> None:
    """Remove what a failed create made, so that nothing is left orphaned.

    Bounded: at most ``ROLLBACK_GRACE`` seconds past the work's deadline.
    """
    keys_r.deadline = max(deadline, time.monotonic()) + ROLLBACK_GRACE
    c.t.deadline = keys_r.deadline
    try:
        if bucket_id is not None:
            ctx.progress("rolling back", f"bucket {bucket_id}")

            def gone():
                return True if c.get_bucket(id=bucket_id) is None else None

            _until(keys_r.deadline, lambda: c.delete_bucket(bucket_id), gone, c.t.timeout)
        for key_id in keys_r.made:
            keys_r.delete(key_id)
    except (ProviderError, AdminError) as exc:
        ctx.log("could not roll back what the failed create made: %s", exc)


def read(resource, ctx) -> dict:
    inputs, prev = resource.inputs, resource.outputs or {}
    c = connect(inputs, ctx)
    with admin_errors():
        bucket = c.get_bucket(id=prev["bucketId"]) if prev.get("bucketId") else None
    if bucket is None:
        raise NotFound(f"bucket {prev.get('bucketId')} ({prev.get('globalAlias')}) is gone",
                       hint="create the resource again")
    alias = prev.get("globalAlias")
    if alias not in bucket["globalAliases"] and bucket["globalAliases"]:
        alias = bucket["globalAliases"][0]
    keys = {name: dict(k) for name, k in (prev.get("keys") or {}).items()}
    for key in keys.values():
        ctx.add_secret(key.get("secretAccessKey"))
    cors, lifecycle = prev.get("cors", []), prev.get("lifecycle", [])
    perms = {k["accessKeyId"]: k["permissions"] for k in bucket["keys"]}
    owner = {n: dict(k, owner=True) for n, k in keys.items() if perms.get(k["accessKeyId"], {}).get("owner")}
    if owner:
        from .s3 import S3

        key = next(iter(owner.values()))
        s3 = S3(inputs["s3Endpoint"], inputs.get("region", "garage"), key["accessKeyId"], key["secretAccessKey"])
        cors, lifecycle = s3.get_cors(alias), s3.get_lifecycle(alias)
    return outputs(inputs, bucket, alias, keys, cors, lifecycle, prev.get("creationToken"))


def update(resource, inputs: dict, ctx) -> dict:
    check_inputs(inputs)
    prev = resource.outputs or {}
    alias, old_alias = inputs["globalAlias"], prev.get("globalAlias")
    c = connect(inputs, ctx)
    deadline = work_deadline(inputs, ctx)
    keys_r = Keys(c, ctx, deadline, prev.get("creationToken") or creation_token(resource.inputs))
    with admin_errors():
        bucket = c.get_bucket(id=prev["bucketId"])
        if bucket is None:
            raise NotFound(f"bucket {prev['bucketId']} ({old_alias}) is gone",
                           hint="delete the resource and create it again")
        old_keys = prev.get("keys") or {}
        for key in old_keys.values():
            ctx.add_secret(key.get("secretAccessKey"))
        keys: dict[str, dict] = {}
        for i, entry in enumerate(inputs["keys"]):
            old = old_keys.get(entry["name"])
            given = entry.get("accessKeyId")
            if old and (old["accessKeyId"] == given or (not given and old.get("created"))):
                keys[entry["name"]] = {k: old[k] for k in ("accessKeyId", "secretAccessKey", "created")}
            else:
                keys[entry["name"]] = keys_r.resolve(alias, entry, f"keys[{i}]")
        kept = {k["accessKeyId"] for k in keys.values()}
        for name, old in old_keys.items():
            if old["accessKeyId"] in kept:
                continue
            if old.get("created"):
                ctx.progress("deleting key", name)
                keys_r.delete(old["accessKeyId"])
            else:
                have = next((k["permissions"] for k in bucket["keys"] if k["accessKeyId"] == old["accessKeyId"]), {})
                deny = {p: True for p in PERMS if have.get(p)}
                if deny:
                    c.set_permissions(bucket["id"], old["accessKeyId"], allow={}, deny=deny)
            bucket = dict(bucket, keys=[k for k in bucket["keys"] if k["accessKeyId"] != old["accessKeyId"]])
        bucket = converge_bucket(c, bucket, inputs, keys, old_alias, deadline)
    cors, lifecycle = converge_s3(inputs, keys, alias, prev.get("cors", []), prev.get("lifecycle", []),
                                  observe=True)
    return outputs(inputs, bucket, alias, keys, cors, lifecycle, prev.get("creationToken"))


def delete(resource, ctx) -> None:
    inputs, prev = resource.inputs, resource.outputs or {}
    c = connect(inputs, ctx)
    deadline = work_deadline(inputs, ctx)
    keys_r = Keys(c, ctx, deadline, prev.get("creationToken") or creation_token(inputs))
    keys = prev.get("keys") or {}
    for key in keys.values():
        ctx.add_secret(key.get("secretAccessKey"))
    bucket_id = prev.get("bucketId")
    with admin_errors():
        bucket = c.get_bucket(id=bucket_id) if bucket_id else None
        if bucket is not None:
            alias = prev.get("globalAlias")
            if alias not in bucket["globalAliases"] and bucket["globalAliases"]:
                alias = bucket["globalAliases"][0]
            if inputs.get("forceDestroy"):
                _empty(c, bucket, alias, inputs, keys, keys_r, ctx)

            def look():
                return True if c.get_bucket(id=bucket_id) is None else None

            try:
                _until(deadline, lambda: c.delete_bucket(bucket_id), look, c.t.timeout)
            except AdminError as exc:
                if exc.status == 404:
                    pass
                elif exc.status == 409 or exc.code == "BucketNotEmpty":
                    raise Conflict(f"bucket {alias!r} ({bucket_id}) is not empty", field="forceDestroy",
                                   hint="empty it first, or set forceDestroy = true to delete its objects too") from None
                else:
                    raise
        for name, key in keys.items():
            if key.get("created"):
                keys_r.delete(key["accessKeyId"])


def _empty(c: AdminClient, bucket: dict, alias: str, inputs: dict, keys: dict, keys_r: Keys, ctx) -> None:
    """Delete every object and unfinished upload over S3, with a key that may."""
    perms = {k["accessKeyId"]: k["permissions"] for k in bucket["keys"]}
    as_now = [{"name": n, **perms.get(k["accessKeyId"], {})} for n, k in keys.items()]  # not as recorded
    s3 = s3_for(dict(inputs, keys=as_now), keys, need=("read", "write"))
    temp = None
    if s3 is None:  # no key of ours may empty it: a temporary one, found again by its name
        from .s3 import S3

        temp = keys_r.resolve(alias, {"name": FORCE_DESTROY_KEY}, "forceDestroy")
        c.set_permissions(bucket["id"], temp["accessKeyId"], allow={"read": True, "write": True}, deny={})
        s3 = S3(inputs["s3Endpoint"], inputs.get("region", "garage"), temp["accessKeyId"], temp["secretAccessKey"])
    ctx.progress("emptying bucket", alias)
    gone = s3.empty(alias)
    ctx.progress("emptied bucket", f"{gone} objects and uploads removed")
    if temp is not None:
        keys_r.delete(temp["accessKeyId"])
