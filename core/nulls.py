"""``null`` means absent: what NixOps4 sends for an option nobody set.

The generated provider module gives every optional input without a default
``nullOr`` and ``default = null`` (NixOps4 evaluates every option, so an unset
one must have a value), and NixOps4 sends that ``null``.  A plugin whose schema
says ``{"type": "string"}`` for an optional property means "a string, or not
given"; so, for a property whose schema does not admit ``null``, the core
drops the ``null`` before validation: the schema's default then applies, and
the plugin never sees it.  Where the schema admits ``null`` (``["string",
"null"]``), ``null`` is a value and stays.
"""

from __future__ import annotations

from typing import Any

__all__ = ["drop_nulls", "admits_null"]


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    """Follow local ``$ref``s (a few levels deep: the shapes plugins write)."""
    for _ in range(8):
        if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
            return schema
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return {}  # remote: cannot tell, so treat it as admitting anything
        target: Any = root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part, {}) if isinstance(target, dict) else {}
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def admits_null(schema: Any, root: dict[str, Any] | None = None) -> bool:
    """Whether ``null`` could satisfy ``schema`` (conservatively: when unsure, yes)."""
    schema = _resolve(schema, root if root is not None else schema)
    if schema is True or not isinstance(schema, dict):
        return schema is not False
    if "const" in schema:
        return schema["const"] is None
    if "enum" in schema and None not in schema["enum"]:
        return False
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if "null" not in kinds:
            return False
    for key in ("anyOf", "oneOf"):
        if key in schema and not any(admits_null(branch, root or schema) for branch in schema[key]):
            return False
    if "allOf" in schema and not all(admits_null(branch, root or schema) for branch in schema["allOf"]):
        return False
    return True


def drop_nulls(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A copy of ``instance`` without the ``null`` properties its schema does not admit.

    Nested objects too, objects inside arrays, and the entries of a map
    (``additionalProperties`` with a schema, ``attrsOf`` in Nix: an entry
    itself is never dropped, but its ``null`` fields are).  Values the schema does not
    describe are copied as they are (validation then speaks about them).
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return instance
    if isinstance(instance, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        result = {}
        for key, value in instance.items():
            sub = properties.get(key)
            if sub is None and isinstance(extra, dict):  # an entry of a map (attrsOf in Nix)
                result[key] = value if value is None else drop_nulls(value, extra, root)
                continue
            if sub is None:
                result[key] = value
            elif value is None and not admits_null(sub, root):
                continue  # absent: the default (if any) applies
            else:
                result[key] = drop_nulls(value, sub, root)
        return result
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [drop_nulls(item, schema["items"], root) for item in instance]
    return instance
