"""Text that came from outside: inputs, and what remote servers answer.

Two rules, one module, so that every provider applies them the same way:

- what is *written* somewhere it could be interpreted (an ``ssh_config``, a
  command line, an HTTP header, a file name) must hold no control character
  (a newline in an ``ssh_config`` value starts a new directive) and is quoted
  for its destination;
- what is *shown* (a remote error message on stderr, in an errorResponse) has
  its control characters escaped, so a server cannot forge log lines or move
  the terminal's cursor.
"""

from __future__ import annotations

import re
import shlex

from .errors import InvalidInput
from .printable import printable as _printable

__all__ = [
    "refuse_control", "ssh_config_value", "shell_quote", "header_value", "path_component", "printable",
    "host_name", "user_name",
]

# C0 controls, DEL, C1 controls, the Unicode line and paragraph separators,
# and the bidirectional controls (which can hide what a value really says).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def refuse_control(value: str, *, field: str) -> str:
    """``value`` unchanged, or InvalidInput when it holds a control character."""
    if not isinstance(value, str):
        raise InvalidInput(f"expected text, got {type(value).__name__}", field=field,
                           hint="nothing was changed")
    found = _CONTROL.search(value)
    if found:
        raise InvalidInput(f"holds the control character {found.group()!r} at offset {found.start()}",
                           field=field, hint="remove it; nothing was changed")
    return value


def ssh_config_value(value: str, *, field: str, tokens: bool = False) -> str:
    """``value`` quoted for one ``ssh_config`` argument, read back by ssh as it is.

    ssh_config reads a double-quoted argument with ``\\`` and ``\\"`` as
    escapes, so both are escaped; control characters (a newline would start
    a new directive) are refused.  Directives that expand ``%`` tokens
    (``IdentityFile``, ``UserKnownHostsFile``, ``ControlPath``, ``HostName``)
    are written with ``tokens=True``, which doubles every ``%``.  A leading
    ``-`` is harmless: an ssh_config argument is never taken as an option.
    """
    refuse_control(value, field=field)
    if not value:
        raise InvalidInput("is empty", field=field, hint="give a value; nothing was changed")
    if tokens:
        value = value.replace("%", "%%")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")


def host_name(value: str, *, field: str) -> str:
    """``value`` if it is a host name, an IPv4 address or an IPv6 literal; else InvalidInput.

    The same rule as the ``ssh.host`` schemas, applied again where the value
    is written, so that a plugin passing an unchecked value is refused too.
    IPv6 literals are written without brackets (ssh and Nix add their own).
    """
    import ipaddress

    refuse_control(value, field=field)
    if ":" in value and "%" not in value:  # no scope id: the schemas allow none, and it is free text
        try:
            ipaddress.IPv6Address(value)
            return value
        except ValueError:
            pass
    elif len(value) <= 253 and _HOST_NAME.fullmatch(value):
        return value
    raise InvalidInput(
        f"{printable(value, 80)!r} is not a host name, an IPv4 address or an IPv6 literal", field=field,
        hint="give e.g. 'vm1.example.org', '192.0.2.10' or '2001:db8::10' (no brackets, no port); "
             "nothing was changed",
    )


def user_name(value: str, *, field: str) -> str:
    """``value`` if it is a POSIX user name (letters, digits, ``_ . -``, at most 32); else InvalidInput."""
    refuse_control(value, field=field)
    if _USER_NAME.fullmatch(value):
        return value
    raise InvalidInput(
        f"{printable(value, 80)!r} is not a POSIX user name", field=field,
        hint="give a name of letters, digits, '_', '.' or '-' that does not start with a digit or '-' "
             "(at most 32 characters); nothing was changed",
    )


def shell_quote(value: str, *, field: str) -> str:
    """``value`` as one word for a POSIX shell (the remote end of ssh runs one)."""
    return shlex.quote(refuse_control(value, field=field))


def header_value(value: str, *, field: str) -> str:
    """``value`` for an HTTP header: no CR/LF or other control character."""
    return refuse_control(value, field=field)


def path_component(value: str, *, field: str) -> str:
    """``value`` as one file name: not empty, not ``.``/``..``, no ``/``, no control character."""
    refuse_control(value, field=field)
    if value in ("", ".", "..") or "/" in value:
        raise InvalidInput(f"{value!r} is not a single file name", field=field,
                           hint="use a name without '/' that is not '.' or '..'; nothing was changed")
    return value


def printable(text: object, limit: int = 500) -> str:
    """``text`` safe to show (see :mod:`.printable`), cut to ``limit`` characters."""
    text = text if isinstance(text, str) else str(text)
    if len(text) > limit:
        text = text[:limit] + f"… ({len(text) - limit} more characters)"
    return _printable(text)
