"""Host public keys and private key files, checked before any connection.

Parsing the pinned ``hostPublicKey`` ourselves gives a person a precise
message (unknown type, bad base64, type and blob disagree) instead of a
failed handshake, and fingerprints in the form ``ssh-keygen -lf`` prints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from typing import Any

from fediversity_providers import Context, InvalidInput
from fediversity_providers.core.secretfile import read_regular_file

#: An SSH private key is a few kilobytes; reading stops past this.
MAX_KEY_BYTES = 64 * 1024

#: Host key types paramiko can verify.
KNOWN_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)


def fingerprint(blob: bytes) -> str:
    """``SHA256:...`` as OpenSSH prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _bad(message: str, hint: str) -> InvalidInput:
    return InvalidInput(message, field="ssh.hostPublicKey", hint=hint)


_HINT = "give the line of the machine's /etc/ssh/ssh_host_ed25519_key.pub, e.g. 'ssh-ed25519 AAAAC3Nza...'"


def parse_host_key(text: str) -> tuple[str, bytes]:
    """``(type, blob)`` of a ``"type base64 [comment]"`` line, or InvalidInput."""
    parts = text.strip().split()
    if len(parts) < 2:
        raise _bad(f"{text.strip()!r} is not an SSH public key line ('<type> <base64>')", _HINT)
    kind, data = parts[0], parts[1]
    if kind not in KNOWN_TYPES:
        raise _bad(f"unknown host key type {kind!r}; known types: {', '.join(KNOWN_TYPES)}", _HINT)
    try:
        blob = base64.b64decode(data, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        inner = blob[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        raise _bad(f"the {kind} key data is not valid base64 of an SSH key", _HINT) from None
    if inner != kind:
        raise _bad(f"the key line says {kind!r} but its data holds a {inner!r} key", _HINT)
    return kind, blob


def host_key_object(kind: str, blob: bytes) -> Any:
    """The paramiko key object of a parsed host key (imports paramiko)."""
    import paramiko

    try:
        key = paramiko.PKey.from_type_string(kind, blob)
        if key.asbytes() == blob:  # truncated or padded data reads back differently
            return key
    except Exception:  # paramiko raises several kinds for bad key data
        pass
    raise _bad(f"the {kind} key data is malformed (truncated or corrupted)", _HINT)


def load_private_key(path: str, ctx: Context) -> Any:
    """The paramiko key in ``path``; its contents are registered as secrets first."""
    import paramiko

    field = "ssh.privateKeyFile"
    # A regular file, opened without blocking (a FIFO would hang the request).
    raw = read_regular_file(path, field=field, limit=MAX_KEY_BYTES, what="one private key")
    text = raw.decode("utf-8", "replace")
    ctx.add_secret(text)
    ctx.add_secret(text.strip())
    for line in text.splitlines():
        if len(line.strip()) >= 16:
            ctx.add_secret(line.strip())
    try:
        return paramiko.PKey.from_path(os.path.expanduser(path))
    except (paramiko.PasswordRequiredException, TypeError) as error:
        if isinstance(error, TypeError) and "encrypted" not in str(error) and "assword" not in str(error):
            raise InvalidInput(
                f"private key file {path} is not an SSH private key paramiko can read ({type(error).__name__})",
                field=field, hint="give an OpenSSH or PEM private key file (ed25519, ecdsa or rsa)",
            ) from None
        raise InvalidInput(
            f"private key file {path} is passphrase-protected", field=field,
            hint="use a key without a passphrase for deployments (ssh-keygen -p -N '' -f FILE removes it)",
        ) from None
    except Exception as error:
        raise InvalidInput(
            f"private key file {path} is not an SSH private key paramiko can read ({type(error).__name__})",
            field=field, hint="give an OpenSSH or PEM private key file (ed25519, ecdsa or rsa)",
        ) from None


#: The ssh object's defaults, as existing_vm's schema gives them.
SSH_DEFAULTS = {"port": 22, "user": "root", "privateKeyFile": None, "connectTimeout": 10}


def checked_login(ssh: dict, ctx: Context) -> tuple[dict, Any, Any]:
    """``(ssh, pinned, pkey)`` for a pinned login: every field checked before any connection.

    ``ssh`` comes back with its defaults and its host key without the comment;
    ``pinned`` is the paramiko host key, ``pkey`` the private key or None
    (the default key files).  Host and user are checked again here, where
    they are used, whatever the schema said.
    """
    from fediversity_providers.core.untrusted import host_name, user_name

    ssh = {**SSH_DEFAULTS, **ssh}
    host_name(ssh["host"], field="ssh.host")
    user_name(ssh["user"], field="ssh.user")
    kind, blob = parse_host_key(ssh["hostPublicKey"])
    ssh["hostPublicKey"] = f"{kind} {base64.b64encode(blob).decode()}"
    pinned = host_key_object(kind, blob)
    pkey = load_private_key(ssh["privateKeyFile"], ctx) if ssh["privateKeyFile"] else None
    return ssh, pinned, pkey


def pin(client: Any, ssh: dict, pinned: Any) -> None:
    """Make paramiko ``client`` accept only ``pinned`` for the machine: no known_hosts, no first use."""
    import paramiko

    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    name = ssh["host"] if ssh["port"] == 22 else f"[{ssh['host']}]:{ssh['port']}"
    client.get_host_keys().add(name, pinned.get_name(), pinned)
