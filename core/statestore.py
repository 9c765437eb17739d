"""What a state store does with NixOps4's state: the document, and JSON Patch.

A state-store type (``is_state_store = True``) keeps NixOps4's deployment
state.  NixOps4 (main, 53d8554) re-sends the store's ``create`` on every
apply (with ``isStateful: false``), then reads the state with
``stateResourceReadRequest`` and parses the answer as its state document,
``{"_type": "nixopsState", "resources": {}, "deployments": {}}`` (upstream's
``state-schema-v0.json``); after each resource it creates or updates, it sends
a ``stateResourceEvent`` whose ``patch`` is an RFC 6902 JSON Patch array
against ``{"resources", "deployments"}``.  Each resource entry is
``{"type", "input_properties", "output_properties"}`` (snake_case, as NixOps4
writes it).  So a store's create must keep an existing state, its read must
return the whole document, and its event must apply the patch.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["empty_state", "apply_patch", "PatchError"]


class PatchError(ValueError):
    """A JSON Patch that does not apply to the document."""


def empty_state() -> dict[str, Any]:
    """NixOps4's state document with nothing in it."""
    return {"_type": "nixopsState", "resources": {}, "deployments": {}}


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"not a JSON Pointer: {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _parent(document: Any, tokens: list[str], pointer: str) -> Any:
    target = document
    for token in tokens[:-1]:
        try:
            target = target[int(token)] if isinstance(target, list) else target[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise PatchError(f"path {pointer!r} does not exist") from None
    return target


def _get(document: Any, pointer: str) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        return document
    parent = _parent(document, tokens, pointer)
    try:
        return parent[int(tokens[-1])] if isinstance(parent, list) else parent[tokens[-1]]
    except (KeyError, IndexError, ValueError, TypeError):
        raise PatchError(f"path {pointer!r} does not exist") from None


def _add(document: Any, pointer: str, value: Any) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        return value
    parent = _parent(document, tokens, pointer)
    key = tokens[-1]
    if isinstance(parent, list):
        index = len(parent) if key == "-" else int(key)
        if not 0 <= index <= len(parent):
            raise PatchError(f"index {key} is out of range at {pointer!r}")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[key] = value
    else:
        raise PatchError(f"path {pointer!r} is inside a value that is not an object or array")
    return document


def _remove(document: Any, pointer: str) -> Any:
    tokens = _tokens(pointer)
    _get(document, pointer)  # must exist
    if not tokens:
        return None
    parent = _parent(document, tokens, pointer)
    if isinstance(parent, list):
        del parent[int(tokens[-1])]
    else:
        del parent[tokens[-1]]
    return document


def apply_patch(document: Any, patch: list[dict[str, Any]]) -> Any:
    """``document`` with an RFC 6902 patch applied (a new value; the argument is not changed)."""
    if not isinstance(patch, list):
        raise PatchError("a JSON Patch is an array of operations")
    result = copy.deepcopy(document)
    for operation in patch:
        op, path = operation.get("op"), operation.get("path")
        if not isinstance(path, str):
            raise PatchError(f"operation {operation!r} has no path")
        if op == "add":
            result = _add(result, path, copy.deepcopy(operation["value"]))
        elif op == "remove":
            result = _remove(result, path)
        elif op == "replace":
            _get(result, path)
            result = _add(_remove(result, path) if path else result, path, copy.deepcopy(operation["value"]))
        elif op in ("move", "copy"):
            value = copy.deepcopy(_get(result, operation["from"]))
            if op == "move":
                result = _remove(result, operation["from"])
            result = _add(result, path, value)
        elif op == "test":
            if _get(result, path) != operation.get("value"):
                raise PatchError(f"test failed at {path!r}")
        else:
            raise PatchError(f"unknown JSON Patch operation {op!r}")
    return result
