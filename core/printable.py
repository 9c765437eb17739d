"""Text that is safe to put in front of a person: no control characters, no lone surrogates.

Inputs, plugin messages and remote answers end up in error messages, which
NixOps4 prints on a terminal, and in log lines on stderr.  An escape sequence
there can rewrite the screen, a newline can forge a log line, a bidirectional
override can hide text (Trojan Source), and a lone surrogate cannot be
encoded as UTF-8 at all (NixOps4 would refuse the whole answer line).  Such
characters are written as visible escapes instead (``\\x1b``, ``\\u202e``,
``\\udcff``).
"""

from __future__ import annotations

__all__ = ["printable", "UNSAFE"]


def _unsafe_code_points() -> list[int]:
    points = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]  # C0, DEL, C1
    points += [0x2028, 0x2029]  # line and paragraph separators
    points += [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]  # bidi controls
    return points


def _escape(point: int) -> str:
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}"


#: ``str.translate`` table for everything :func:`printable` escapes, surrogates aside.
UNSAFE = {point: _escape(point) for point in _unsafe_code_points()}


def printable(text: str, *, keep: str = "") -> str:
    """``text`` with unsafe characters escaped; those in ``keep`` (say ``"\\n"``) stay."""
    if text.isascii() and text.isprintable():
        return text  # the common case, checked in C
    table = UNSAFE if not keep else {k: v for k, v in UNSAFE.items() if chr(k) not in keep}
    text = text.translate(table)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from a file name that is not UTF-8
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
