"""Lines on the wire, on the provider's hot path: bytes in, (kind, body) out, and back.

The standard library alone: a line's JSON value, its kind and body, and an
answer line.  :mod:`requestline` adds the check against
``schemas/protocol.json`` (with :mod:`quickcheck`); attrs, cattrs and
jsonschema are imported only to explain a line that is refused
(:mod:`messages` holds the typed classes and the cattrs converter, the
authority on what a message is, and builds on this module).  NixOps4 starts a
process per operation, and those imports would cost more than the rest of the
start-up together.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import ProtocolError

__all__ = ["REQUEST_KINDS", "RESPONSE_KINDS", "parse_line", "split", "encode", "json_type"]

REQUEST_KINDS = (
    "createResourceRequest",
    "updateResourceRequest",
    "readResourceRequest",
    "deleteResourceRequest",
    "destroyResourceRequest",
    "stateResourceReadRequest",
    "stateResourceEvent",
)
RESPONSE_KINDS = (
    "createResourceResponse",
    "updateResourceResponse",
    "readResourceResponse",
    "deleteResourceResponse",
    "destroyResourceResponse",
    "stateResourceReadResponse",
    "stateResourceEventResponse",
    "errorResponse",
)


def json_type(value: Any) -> str:
    """How a person would name a JSON value's type."""
    return {
        dict: "an object", list: "an array", str: "a string", bool: "a boolean",
        int: "a number", float: "a number", type(None): "null",
    }.get(type(value), type(value).__name__)


def parse_line(line: bytes | str) -> Any:
    """The JSON value of one line, or :class:`ProtocolError` saying why not."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"the line is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"the line is not JSON: {exc}") from None


def split(value: Any, kinds: tuple[str, ...] | Any = REQUEST_KINDS) -> tuple[str, Any]:
    """``(kind, body)`` of a one-key message object whose kind is one of ``kinds``."""
    if not isinstance(value, dict) or len(value) != 1:
        raise ProtocolError(
            f"a message must be an object with exactly one key naming its kind, got {json_type(value)}"
            + (f" with {len(value)} keys" if isinstance(value, dict) else ""),
            hint=f"known kinds: {', '.join(kinds)}",
        )
    ((kind, body),) = value.items()
    if kind not in kinds:
        raise ProtocolError(f"unknown message kind {kind!r}", hint=f"this provider understands: {', '.join(kinds)}")
    if not isinstance(body, dict):
        raise ProtocolError(f"{kind}: expected an object, got {json_type(body)}")
    return kind, body


def encode(kind: str, body: dict[str, Any]) -> bytes:
    """One wire line, ``\\n``-terminated, without pretty-printing."""
    return (json.dumps({kind: body}, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")

