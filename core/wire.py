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
from .printable import printable

__all__ = [
    "REQUEST_KINDS", "RESPONSE_KINDS", "MAX_DEPTH", "parse_line", "split", "encode", "json_type", "unwritable",
]

#: How deeply arrays and objects may nest in a request.  Deeper values are
#: refused before any schema check or plugin sees them: validators recurse,
#: and Python's stack is not a resource a request may exhaust.
MAX_DEPTH = 64

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


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {printable(text[:40])} is too large for a double")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit``; iterative, so any depth is safe to ask."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_line(line: bytes | str, *, what: str = "the line") -> Any:
    """The JSON value of one line, or :class:`ProtocolError` saying why not.

    Stricter than :func:`json.loads`, as NixOps4's own parser is: ``NaN``,
    ``Infinity``, numbers beyond a double (``1e400``), strings holding a lone
    surrogate (``"\\udcff"``: not Unicode text, and no answer could echo it)
    and nesting deeper than :data:`MAX_DEPTH` are refused.  ``what`` names
    the text in the error (a flag's value, say).
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(line, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise ProtocolError(f"{what} nests arrays or objects more than {MAX_DEPTH} deep") from None
    except ValueError as exc:
        raise ProtocolError(f"{what} is not JSON: {printable(str(exc))}") from None
    if (line.count("[") + line.count("{") > MAX_DEPTH) and _depth_exceeds(value, MAX_DEPTH):
        raise ProtocolError(f"{what} nests arrays or objects more than {MAX_DEPTH} deep")
    if "\\u" in line and _lone_surrogate(value):
        raise ProtocolError(
            f"{what} holds a string with a lone surrogate (a \\ud800-\\udfff escape without its pair), "
            "which is not Unicode text"
        )
    return value


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
    """One wire line, ``\\n``-terminated, without pretty-printing.

    An ``errorResponse`` message is made :func:`printable` first (NixOps4
    shows it on a terminal).  Anything else must be writable already (see
    :func:`unwritable`): ``ValueError`` or ``UnicodeEncodeError`` otherwise.
    """
    if kind == "errorResponse":
        body = {**body, "message": printable(str(body.get("message", "")))}
    text = json.dumps({kind: body}, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def unwritable(value: Any, root: str) -> str | None:
    """Why ``value`` cannot go on the wire as NixOps4 reads it, or None when it can.

    JSON has no NaN or Infinity (Python's encoder writes them unless told
    not to, and NixOps4 refuses the line), a lone surrogate is not UTF-8, and
    nesting beyond Python's stack cannot be encoded at all.
    """
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        return None
    except (ValueError, UnicodeEncodeError, RecursionError, TypeError):
        pass
    stack: list[tuple[Any, str, int]] = [(value, root, 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"{path}: nested more than {MAX_DEPTH} deep"
        if isinstance(item, float) and item != item:
            return f"{path}: NaN is not a JSON number"
        if isinstance(item, float) and item in (float("inf"), float("-inf")):
            return f"{path}: {item} is not a JSON number"
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > 10**4000:
            return f"{path}: an integer of more than 4000 digits"
        if isinstance(item, str) and _lone_surrogate(item):
            return f"{path}: {printable(repr(item)[:80])} holds a lone surrogate, which is not Unicode text"
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"{path}: the key {printable(repr(key)[:80])} is not a string"
                if _lone_surrogate(key):
                    return f"{path}: the key {printable(repr(key)[:80])} holds a lone surrogate"
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))
        elif not isinstance(item, (str, int, float, bool, type(None))):
            return f"{path}: {type(item).__name__} is not a JSON value"
    return "the value cannot be written as JSON"

