"""One request line on the provider's hot path: bytes in, ``(kind, body)`` out, or why not.

A line that ``schemas/protocol.json`` accepts is parsed and split with the
standard library and :mod:`quickcheck` alone (:mod:`wire`); only a refused
line brings in the typed classes of :mod:`messages` (attrs, cattrs) to explain
what is wrong.  This sits above both: :mod:`messages` builds on :mod:`wire`,
so the step that needs the two of them cannot live in either without an
import circle.
"""

from __future__ import annotations

from typing import Any

from .wire import parse_line, split

__all__ = ["parse_request"]

_request_check = None


def _well_formed(value: Any) -> bool:
    global _request_check
    if _request_check is None:
        from . import quickcheck
        from .resource import load_schema

        document = load_schema("protocol")
        _request_check = quickcheck.compile(document["$defs"]["request"], document) or (lambda v: False)
    return _request_check(value)


def parse_request(line: bytes | str) -> tuple[str, dict[str, Any]]:
    """``(kind, body)`` of a well-formed request line, or :class:`ProtocolError` saying what is wrong."""
    value = parse_line(line)
    kind, body = split(value)
    if not _well_formed(value):
        from . import messages  # the typed classes explain what is wrong

        messages.decode(value, messages.REQUEST_KINDS)
    return kind, body
