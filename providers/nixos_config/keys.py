"""Deployment keys: secret files written onto the machine outside the Nix store.

The model of NixOps 1 and colmena: ``keys.<name> = {text | keyFile, destDir,
user, group, permissions, uploadAt}`` puts ``destDir/<name>`` on the machine.

A key's content goes to the machine only through the standard input of one
remote command over the pinned SSH connection (``Target.run(stdin=...)``):
never in a command line, a store path, an output, a log line, or a file
outside ``destDir``.  On the machine it is written atomically (a temporary
file in ``destDir``, owner and mode set before the content, then a rename;
see ``remote.py``).  Drift is found on the machine as well: ``read`` sends
the expected content and the machine compares it with ``cmp``; nothing
about the content (not even a hash) comes back.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from fediversity_providers.core import redact
from fediversity_providers.core.errors import InvalidInput, ProviderError
from fediversity_providers.core.resource import Context
from fediversity_providers.core.secretfile import read_regular_file
from fediversity_providers.core.untrusted import path_component, printable, refuse_control, user_name

from .remote import SCRIPT
from .ssh import Target

__all__ = ["Key", "parse", "upload", "give_to_owners", "check", "remove", "paths_of", "MAX_KEY_BYTES"]

DEFAULT_DIR = "/run/keys"
#: A key larger than this is not a key; reading a keyFile stops there.
MAX_KEY_BYTES = 1024 * 1024
_MODE = re.compile(r"0?[0-7]{3}")
_STORE = "/nix/store"


@attrs.frozen
class Key:
    name: str
    content: bytes = attrs.field(repr=False)
    dest_dir: str
    user: str
    group: str
    permissions: str  # four octal digits
    upload_at: str

    @property
    def path(self) -> str:
        return f"{self.dest_dir}/{self.name}"


def dest_dir(value: Any, *, field: str) -> str:
    """``value`` if it is an absolute, normalised directory outside the Nix store; else InvalidInput."""
    refuse_control(value, field=field)
    parts = value.split("/")
    if not value.startswith("/") or value == "/" or any(p in ("", ".", "..") for p in parts[1:]):
        raise InvalidInput(
            f"{printable(value, 120)!r} is not an absolute, normalised directory", field=field,
            hint="give e.g. '/run/keys' or '/var/lib/keys' (no '..', '.', '//' or trailing '/'); nothing was changed",
        )
    if value == _STORE or value.startswith(_STORE + "/"):
        raise InvalidInput(f"{value!r} is in the Nix store, which every user of the machine can read", field=field,
                           hint="put keys outside the store, e.g. /run/keys; nothing was changed")
    return value


def _read_key_file(path: str, *, field: str) -> bytes:
    data = read_regular_file(path, field=field, limit=MAX_KEY_BYTES, what="a key")  # a FIFO or a directory is refused
    try:
        redact.add_secret(data.decode("utf-8"))  # masked wherever it would be shown
    except UnicodeDecodeError:
        pass
    return data


def parse(inputs: dict) -> list[Key]:
    """The keys of ``inputs``, each checked and its content read; InvalidInput naming the field."""
    keys = []
    for name, entry in sorted((inputs.get("keys") or {}).items()):
        path_component(name, field="keys")
        field = f"keys.{name}"
        entry = entry or {}
        text, key_file = entry.get("text"), entry.get("keyFile")
        if (text is None) == (key_file is None):
            raise InvalidInput(
                "gives both text and keyFile" if text is not None else "gives neither text nor keyFile", field=field,
                hint="give exactly one: text (the content) or keyFile (a file on the deployer); nothing was changed",
            )
        if text is not None:
            if not isinstance(text, str):
                raise InvalidInput("text is not a string", field=f"{field}.text", hint="nothing was changed")
            redact.add_secret(text)
            try:
                content = text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
                raise InvalidInput(
                    "text is not valid Unicode (it holds a lone surrogate)", field=f"{field}.text",
                    hint="give the key as UTF-8 text, or put it in a keyFile; nothing was changed",
                ) from None
        else:
            content = _read_key_file(key_file, field=f"{field}.keyFile")
        permissions = entry.get("permissions", "0400")
        if not isinstance(permissions, str) or not _MODE.fullmatch(permissions):
            raise InvalidInput(f"{printable(str(permissions), 40)!r} is not an octal mode",
                               field=f"{field}.permissions", hint='give e.g. "0400" or "0640"; nothing was changed')
        upload_at = entry.get("uploadAt", "pre-activation")
        if upload_at not in ("pre-activation", "post-activation"):
            raise InvalidInput(f"{printable(str(upload_at), 40)!r} is not pre-activation or post-activation",
                               field=f"{field}.uploadAt", hint="nothing was changed")
        keys.append(Key(
            name=name,
            content=content,
            dest_dir=dest_dir(entry.get("destDir", DEFAULT_DIR), field=f"{field}.destDir"),
            user=user_name(entry.get("user", "root"), field=f"{field}.user"),
            group=user_name(entry.get("group", "root"), field=f"{field}.group"),
            permissions="0" + permissions[-3:],
            upload_at=upload_at,
        ))
    return keys


def paths_of(inputs: dict | None, outputs: dict | None) -> set[str]:
    """The key paths a deployment put on the machine: from its outputs, else its inputs (unchecked)."""
    recorded = (outputs or {}).get("keys")
    if isinstance(recorded, dict):
        candidates = [entry.get("path") for entry in recorded.values() if isinstance(entry, dict)]
    else:
        candidates = [f"{(entry or {}).get('destDir', DEFAULT_DIR)}/{name}"
                      for name, entry in ((inputs or {}).get("keys") or {}).items() if isinstance(entry, dict)]
    found = set()
    for path in candidates:
        try:  # only what could have been a key's path: never some other file named in a tampered state
            directory, _, name = str(path).rpartition("/")
            dest_dir(directory, field="keys")
            path_component(name, field="keys")
        except InvalidInput:
            continue
        found.add(path)
    return found


def _output(key: Key, values: dict[str, str]) -> dict[str, Any]:
    kind = values.get("kind")
    out: dict[str, Any] = {"path": key.path, "user": None, "group": None, "permissions": None,
                           "uploadAt": key.upload_at, "status": "missing"}
    if kind == "missing":
        return out
    out["status"] = "changed"
    if kind != "file":
        return out  # a symlink, a directory, ...: not the key that was put there
    out["user"], out["group"] = values.get("user"), values.get("group")
    mode = values.get("mode", "")
    out["permissions"] = f"{int(mode, 8):04o}" if re.fullmatch(r"[0-7]{1,4}", mode) else None
    if values.get("content") == "same" and (out["user"], out["group"], out["permissions"]) == (
            key.user, key.group, key.permissions):
        out["status"] = "present"
    return out


def upload(target: Target, keys: list[Key], ctx: Context, when: str,
           owner_may_wait: bool = False) -> tuple[dict[str, dict[str, Any]], list[Key]]:
    """Write ``keys`` onto the machine, one remote command each, the content on its stdin.

    With ``owner_may_wait`` (before the activation), a key whose user or group
    the machine does not have yet is written owned by root, with its mode:
    the new system creates them, and NixOS's activation (``fediversity.keyOwners``
    in ``nix-modules/nixos/keys.nix``) or the second upload after it gives the
    file to them.  Returns the outputs and those keys.
    """
    if not keys:
        return {}, []
    ctx.progress("keys", f"uploading {len(keys)} {when} key{'' if len(keys) == 1 else 's'} to {target.label}")
    outputs, waiting = {}, []
    for key in keys:
        result = target.run(SCRIPT, ["key-put", key.dest_dir, key.name, key.user, key.group, key.permissions,
                                     "1" if owner_may_wait else "0"],
                            stdin=key.content, what=f"uploading key {key.name}")
        if result.status != 0 or result.values.get("kind") != "file":
            raise ProviderError(
                f"uploading key {key.name} to {key.path} on {target.label} failed: "
                f"{result.values.get('error') or result.tail()}",
                field=f"keys.{key.name}",
                hint=("check destDir, user and group (they must exist on the machine once the new system is "
                      "active), then apply again"),
            )
        outputs[key.name] = _output(key, result.values)
        if result.values.get("owner") == "pending":
            waiting.append(key)
            ctx.log("key %s: %s (owned by root until the new system creates %s:%s; %s)", key.name, key.path,
                    key.user, key.group, key.permissions)
        else:
            ctx.log("key %s: %s (%s:%s %s)", key.name, key.path, key.user, key.group, key.permissions)
    return outputs, waiting


def give_to_owners(target: Target, keys: list[Key], ctx: Context) -> dict[str, dict[str, Any]]:
    """After the activation: write again the keys whose owner did not exist before it, now owned by them."""
    if not keys:
        return {}
    try:
        outputs, _ = upload(target, keys, ctx, "(now that their owners exist)")
    except ProviderError as error:
        error.message += ("; the new system is active, and the key stays owned by root: create the user and group "
                          "in the NixOS configuration, or fix the key's user and group, then apply again")
        raise
    return outputs


def check(target: Target, keys: list[Key]) -> dict[str, dict[str, Any]]:
    """Each key as it is on the machine, compared there with what it should be."""
    outputs = {}
    for key in keys:
        result = target.run(SCRIPT, ["key-check", key.dest_dir, key.name, key.user, key.group],
                            stdin=key.content, what=f"checking key {key.name}")
        if result.status != 0 or "kind" not in result.values or result.values.get("content") == "unknown":
            raise ProviderError(f"checking key {key.name} ({key.path}) on {target.label} failed:\n{result.tail()}",
                                field=f"keys.{key.name}",
                                hint="the machine needs cmp, stat and id (diffutils, coreutils); then read again")
        outputs[key.name] = _output(key, result.values)
    return outputs


def remove(target: Target, paths: set[str], ctx: Context) -> None:
    """Remove the key files at ``paths`` (files and symlinks only)."""
    if not paths:
        return
    ctx.progress("keys", f"removing {len(paths)} key{'' if len(paths) == 1 else 's'} from {target.label}")
    result = target.run(SCRIPT, ["key-remove", *sorted(paths)], what="removing keys")
    if result.status != 0:
        raise ProviderError(f"removing keys {', '.join(sorted(paths))} on {target.label} failed:\n{result.tail()}",
                            field="keys", hint="remove them by hand or apply again")
    for path in sorted(paths):
        ctx.log("key removed: %s", path)
