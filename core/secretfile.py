"""Reading a secret from a file the deployer names (a token, a password).

No secret is ever an input (inputs end up in the Nix store), so providers
take a *path*.  That path is an input, though, and so is untrusted: a FIFO
would block the request forever, a directory or a device is a mistake, a
file with several lines is not one secret, and whoever shapes the inputs
could name any file the provider can read and have it sent to a machine or
server of their choosing (a deployment key's ``keyFile``, a token file's
first line in an HTTP header): ``FEDIVERSITY_PROVIDERS_FILE_ROOTS`` limits
what may be read to the directories the deployer names.  Whatever is wrong, the error
names the file and the field, never what the file holds.
"""

from __future__ import annotations

import os
import stat

from .errors import InvalidInput

__all__ = ["read_secret_file", "read_regular_file", "open_regular_file", "file_roots", "FILE_ROOTS_ENV",
           "MAX_SECRET_BYTES"]

#: Colon-separated directories: when set, a file an input names is read only if it is under one of them.
FILE_ROOTS_ENV = "FEDIVERSITY_PROVIDERS_FILE_ROOTS"

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
    roots = file_roots()
    if roots is not None:
        real = _real_path(fd, path)
        if not any(os.path.commonpath([real, root]) == root for root in roots):
            os.close(fd)
            raise InvalidInput(
                f"{path!r} is not under the directories {FILE_ROOTS_ENV} allows ({os.pathsep.join(roots)})",
                field=field, hint=f"put the file under one of them, or change {FILE_ROOTS_ENV} where the provider "
                                  "runs; nothing was changed")
    os.set_blocking(fd, True)
    return fd


def file_roots() -> list[str] | None:
    """The directories :data:`FILE_ROOTS_ENV` names (resolved), or None when it is unset: every file may be read."""
    raw = os.environ.get(FILE_ROOTS_ENV)
    if raw is None:
        return None
    return [os.path.realpath(d) for d in raw.split(os.pathsep) if d.strip()]


def _real_path(fd: int, path: str) -> str:
    """Where the file open on ``fd`` really is (what was opened, not what the name says now)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


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
