"""Reading a secret from a file the deployer names (a token, a password).

No secret is ever an input (inputs end up in the Nix store), so providers
take a *path*.  That path is an input, though, and so is untrusted: a FIFO
would block the request forever, a directory or a device is a mistake, and a
file with several lines is not one secret.  Whatever is wrong, the error
names the file and the field, never what the file holds.
"""

from __future__ import annotations

import os
import stat

from .errors import InvalidInput

__all__ = ["read_secret_file", "read_regular_file", "open_regular_file", "MAX_SECRET_BYTES"]

#: A secret larger than this is not a token; reading stops there.
MAX_SECRET_BYTES = 64 * 1024


def open_regular_file(path: str, *, field: str) -> int:
    """An fd open for reading on ``path``, refused unless it is a regular file.

    Opened non-blocking, so a FIFO cannot stall the open itself, then checked
    with ``fstat`` on what was opened (not on the name, which could change in
    between).  Symlinks are followed: secret managers deliver through them.
    """
    if not isinstance(path, str) or not path or "\0" in path:
        raise InvalidInput("not a file path", field=field, hint="give the path of a regular file; nothing was changed")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise InvalidInput(f"cannot open {path!r}: {error.strerror}", field=field,
                           hint="check the path and its permissions; nothing was changed") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InvalidInput(f"{path!r} is not a regular file ({_kind(mode)})", field=field,
                           hint="give the path of a regular file; nothing was changed")
    os.set_blocking(fd, True)
    return fd


def read_regular_file(path: str, *, field: str, limit: int, what: str = "a secret", expand_user: bool = True) -> bytes:
    """At most ``limit`` bytes of the regular file ``path`` (``~`` expanded unless told not to), or InvalidInput.

    For secrets that are not one line (an SSH private key, a deployment
    key's file): refused when not a regular file, unreadable, or larger than
    ``limit``; the error names the file and the field, never the content.
    """
    if expand_user and isinstance(path, str):
        path = os.path.expanduser(path)
    fd = open_regular_file(path, field=field)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as error:
        raise InvalidInput(f"cannot read {path!r}: {error.strerror}", field=field,
                           hint="check the file's permissions; nothing was changed") from None
    if len(data) > limit:
        raise InvalidInput(f"{path!r} is larger than {limit} bytes; it does not hold {what}", field=field,
                           hint=f"give the path of a file holding only {what}; nothing was changed")
    return data


def read_secret_file(path: str, *, field: str) -> str:
    """The one-line secret in ``path``, without its final newline.

    Refused: not a regular file, empty, larger than :data:`MAX_SECRET_BYTES`,
    not UTF-8, or holding more than one line or a carriage return.
    """
    raw = read_regular_file(path, field=field, limit=MAX_SECRET_BYTES, what="one secret", expand_user=False)
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if b"\n" in raw or b"\r" in raw:
        raise InvalidInput(f"{path!r} holds more than one line or a carriage return",
                           field=field, hint="put the secret alone on one line; nothing was changed")
    if not raw.strip():
        raise InvalidInput(f"{path!r} is empty", field=field, hint="put the secret in the file; nothing was changed")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path!r} is not UTF-8 text", field=field,
                           hint="put the secret as text in the file; nothing was changed") from None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"
