"""NixOps4's resource protocol v0 (upstream main) and our extensions, as attrs classes.

Upstream's main branch has create, update, state read and state event;
read and delete are this project's extensions, and destroy is the shape of
upstream's unmerged branches (see ``schemas/protocol.json``, ``x-extension``).

The typed face of the protocol, for the runner, the test drivers and scripts;
the server's hot path works on plain JSON (:mod:`wire`) and comes here only to
explain a refused line.

One cattrs converter maps the wire's camelCase to snake_case, forbids extra
keys, and refuses mistyped fields instead of coercing them (cattrs would turn
``5`` into ``"5"``).  Every wire message is a one-key object naming its kind;
:data:`KINDS` maps those names to classes.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from . import wire
from .errors import ProtocolError
from .wire import json_type, parse_line, split

__all__ = [
    "ResourceState",
    "CreateResourceRequest",
    "UpdateResourceRequest",
    "ReadResourceRequest",
    "DeleteResourceRequest",
    "DestroyResourceRequest",
    "StateResourceReadRequest",
    "StateResourceEvent",
    "CreateResourceResponse",
    "UpdateResourceResponse",
    "ReadResourceResponse",
    "DeleteResourceResponse",
    "DestroyResourceResponse",
    "StateResourceReadResponse",
    "StateResourceEventResponse",
    "ErrorResponse",
    "KINDS",
    "REQUEST_KINDS",
    "kind_of",
    "decode",
    "decode_request",
    "encode",
    "converter",
]

_Json = dict[str, Any]


@attrs.frozen
class ResourceState:
    """The ``resource`` object: a resource as NixOps4 recorded it."""

    type: str
    input_properties: _Json
    output_properties: _Json | None = None


@attrs.frozen
class CreateResourceRequest:
    type: str
    input_properties: _Json
    is_stateful: bool


@attrs.frozen
class UpdateResourceRequest:
    resource: ResourceState
    input_properties: _Json


@attrs.frozen
class ReadResourceRequest:
    """Extension: observe the real world now."""

    resource: ResourceState


@attrs.frozen
class DeleteResourceRequest:
    """Extension: delete what create made; deleting what is gone succeeds."""

    resource: ResourceState


@attrs.frozen
class StateResourceReadRequest:
    resource: ResourceState


@attrs.frozen
class StateResourceEvent:
    """``patch`` is an RFC 6902 JSON Patch array.  NixOps4 always sends ``nixopsVersion``;
    a missing one is tolerated (our leniency, for hand-written requests)."""

    resource: ResourceState
    event: str
    patch: Any
    nixops_version: str | None = None


@attrs.frozen
class DestroyResourceRequest:
    """Extension: delete as upstream's unmerged branches name it (nothing on main sends it); handled like delete."""

    resource: ResourceState


@attrs.frozen
class CreateResourceResponse:
    output_properties: _Json


@attrs.frozen
class UpdateResourceResponse:
    output_properties: _Json


@attrs.frozen
class ReadResourceResponse:
    output_properties: _Json


@attrs.frozen
class DeleteResourceResponse:
    pass


@attrs.frozen
class DestroyResourceResponse:
    pass


@attrs.frozen
class StateResourceReadResponse:
    state: _Json


@attrs.frozen
class StateResourceEventResponse:
    pass


@attrs.frozen
class ErrorResponse:
    message: str


def _lower_first(name: str) -> str:
    return name[0].lower() + name[1:]


KINDS: dict[str, type] = {
    _lower_first(cls.__name__): cls
    for cls in (
        CreateResourceRequest,
        UpdateResourceRequest,
        ReadResourceRequest,
        DeleteResourceRequest,
        DestroyResourceRequest,
        StateResourceReadRequest,
        StateResourceEvent,
        CreateResourceResponse,
        UpdateResourceResponse,
        ReadResourceResponse,
        DeleteResourceResponse,
        DestroyResourceResponse,
        StateResourceReadResponse,
        StateResourceEventResponse,
        ErrorResponse,
    )
}
REQUEST_KINDS = {
    name: cls for name, cls in KINDS.items() if not name.endswith("Response")
}
_NAME_OF = {cls: name for name, cls in KINDS.items()}


def kind_of(message: object) -> str:
    """The wire name of a message's kind (``createResourceRequest``...)."""
    return _NAME_OF[type(message)]


def to_camel(name: str) -> str:
    """``is_stateful`` -> ``isStateful``; a field's ``metadata["wire"]`` wins."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _strict(expected: type, label: str):
    def structure(value: Any, _type: Any) -> Any:
        # bool is an int in Python, and must not pass as one on the wire.
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise TypeError(f"expected {label}, got {json_type(value)}")
        return value

    return structure


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, _strict(str, "a string"))
    conv.register_structure_hook(bool, _strict(bool, "a boolean"))
    conv.register_structure_hook_func(lambda t: t == _Json, _strict(dict, "an object"))
    conv.register_structure_hook_func(lambda t: t == list[Any], _strict(list, "an array"))

    def renames(cls: type) -> dict[str, Any]:
        return {
            f.name: override(rename=f.metadata.get("wire") or to_camel(f.name))
            for f in attrs.fields(cls)
        }

    conv.register_structure_hook_factory(
        attrs.has,
        lambda cls: make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **renames(cls)),
    )
    conv.register_unstructure_hook_factory(
        attrs.has, lambda cls: make_dict_unstructure_fn(
            cls, conv, _cattrs_omit_if_default=True, **renames(cls)
        ),
    )
    return conv


converter = _make_converter()

_PATH_IN_CATTRS = re.compile(r"^(?P<what>.*?) @ \$(?P<path>.*)$")


def _describe(error: Exception, kind: str) -> str:
    lines = []
    for line in cattrs.transform_error(error, path="$"):
        match = _PATH_IN_CATTRS.match(line)
        if match:
            path = match["path"]
            # cattrs speaks in Python names; put the wire names back.
            path = re.sub(r"\.(\w+)", lambda m: "." + to_camel(m[1]), path)
            lines.append(f"{kind}{path}: {match['what']}")
        else:
            lines.append(f"{kind}: {line}")
    return "; ".join(lines)


def decode(value: Any, kinds: dict[str, type] = KINDS) -> object:
    """A message object from a decoded JSON value, or :class:`ProtocolError`."""
    kind, body = split(value, tuple(kinds))
    try:
        return converter.structure(body, kinds[kind])
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        raise ProtocolError(_describe(exc, kind)) from None


def decode_request(line: bytes | str) -> object:
    """A request object from one wire line, or :class:`ProtocolError`."""
    return decode(parse_line(line), REQUEST_KINDS)


def encode(message: object) -> bytes:
    """One wire line, ``\\n``-terminated, without pretty-printing."""
    if type(message) not in _NAME_OF:
        raise TypeError(f"not a protocol message: {message!r}")
    return wire.encode(kind_of(message), converter.unstructure(message))
