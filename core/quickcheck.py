"""A fast yes/no answer to "is this instance valid?", for the JSON Schema subset schemas use.

Importing jsonschema costs several times a bare interpreter's start, and
NixOps4 starts a provider per operation.  Almost every request is valid, so
the core asks this module first and only imports jsonschema to explain a
failure.  It is conservative by construction: :func:`compile` returns None
for a schema using any keyword it does not implement, and the caller then
uses jsonschema for every instance.  A property test checks that it agrees
with jsonschema on every built-in schema.
"""

from __future__ import annotations

import re
from typing import Any, Callable

__all__ = ["compile", "Check"]

Check = Callable[[Any], bool]

# Keywords with no effect on validity (jsonschema ignores `format` unless asked).
_ANNOTATIONS = frozenset({
    "$schema", "$id", "$comment", "title", "description", "default", "examples",
    "deprecated", "readOnly", "writeOnly", "format",
})
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}


class _Unsupported(Exception):
    pass


def compile(schema: Any, root: Any = None) -> Check | None:
    """A function telling whether an instance is valid, or None if unsure of the schema.

    ``root`` is the document that local references (``#/$defs/...``) point into;
    by default the schema itself.
    """
    try:
        return _Compiler(schema if root is None else root).compile(schema)
    except _Unsupported:
        return None


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


class _Compiler:
    """Compiles one document; remembers compiled references so that cycles terminate."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def compile(self, schema: Any) -> Check:
        if schema is True or schema == {}:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, dict):
            raise _Unsupported
        checks: list[Check] = []
        for keyword, value in schema.items():
            if keyword in _ANNOTATIONS or keyword.startswith("x-") or keyword == "$defs":
                continue
            if keyword == "$ref":
                checks.append(self.ref(value))
                continue
            builder = _KEYWORDS.get(keyword)
            if builder is None:
                raise _Unsupported(keyword)
            check = builder(value, schema, self.compile)
            if check is not None:
                checks.append(check)
        return lambda v: all(check(v) for check in checks)

    def ref(self, pointer: Any) -> Check:
        if not isinstance(pointer, str) or not pointer.startswith("#/"):
            raise _Unsupported(pointer)
        if pointer not in self.refs:
            target: Any = self.root
            for part in pointer[2:].split("/"):
                if not isinstance(target, dict) or part not in target:
                    raise _Unsupported(pointer)
                target = target[part]
            slot: list[Check] = []
            self.refs[pointer] = lambda v: slot[0](v)  # filled below; cycles see the slot
            slot.append(self.compile(target))
        return self.refs[pointer]


def _type(value, _schema, _sub):
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or any(name not in _TYPES for name in names):
        raise _Unsupported
    tests = [_TYPES[name] for name in names]
    return lambda v: any(test(v) for test in tests)


def _properties(value, schema, sub_compile):
    compiled = {name: sub_compile(sub) for name, sub in value.items()}
    extra = schema.get("additionalProperties", True)
    extra_check = sub_compile(extra)
    patterns = schema.get("patternProperties")
    if patterns is not None:
        raise _Unsupported

    def check(v):
        if not isinstance(v, dict):
            return True
        for key, item in v.items():
            sub = compiled.get(key)
            if sub is None:
                if not extra_check(item):
                    return False
            elif not sub(item):
                return False
        return True

    return check


def _additional(value, schema, sub_compile):
    if "properties" in schema:
        return None  # handled together with properties
    return _properties({}, schema, sub_compile)


def _property_names(value, _schema, sub_compile):
    sub = sub_compile(value)
    return lambda v: not isinstance(v, dict) or all(sub(key) for key in v)


def _required(value, _schema, _sub):
    names = list(value)
    return lambda v: not isinstance(v, dict) or all(name in v for name in names)


def _items(value, _schema, sub_compile):
    if not isinstance(value, dict) and not isinstance(value, bool):
        raise _Unsupported  # tuple form belongs to older drafts
    sub = sub_compile(value)
    return lambda v: not isinstance(v, list) or all(sub(item) for item in v)


def _enum(value, _schema, _sub):
    options = list(value)
    return lambda v: any(_json_equal(v, option) for option in options)


def _const(value, _schema, _sub):
    return lambda v: _json_equal(v, value)


def _number(test):
    def builder(limit, _schema, _sub):
        if isinstance(limit, bool) or not isinstance(limit, (int, float)):
            raise _Unsupported
        return lambda v: not _TYPES["number"](v) or test(v, limit)

    return builder


def _length(test, kind):
    def builder(limit, _schema, _sub):
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise _Unsupported
        return lambda v: not isinstance(v, kind) or test(len(v), limit)

    return builder


def _pattern(value, _schema, _sub):
    if not isinstance(value, str):
        raise _Unsupported
    compiled: list[Any] = []

    def check(v: Any) -> bool:
        if not isinstance(v, str):
            return True
        if not compiled:  # compiled on first use: a property absent from the request costs nothing
            compiled.append(re.compile(value))
        return compiled[0].search(v) is not None

    return check


def _combinator(count_ok):
    def builder(value, _schema, sub_compile):
        subs = [sub_compile(sub) for sub in value]
        return lambda v: count_ok(sum(1 for sub in subs if sub(v)), len(subs))

    return builder


def _not(value, _schema, sub_compile):
    sub = sub_compile(value)
    return lambda v: not sub(v)


_KEYWORDS: dict[str, Callable[[Any, dict, Callable[[Any], Check]], Check | None]] = {
    "type": _type,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "propertyNames": _property_names,
    "items": _items,
    "enum": _enum,
    "const": _const,
    "minimum": _number(lambda v, n: v >= n),
    "maximum": _number(lambda v, n: v <= n),
    "exclusiveMinimum": _number(lambda v, n: v > n),
    "exclusiveMaximum": _number(lambda v, n: v < n),
    "minLength": _length(lambda n, m: n >= m, str),
    "maxLength": _length(lambda n, m: n <= m, str),
    "minItems": _length(lambda n, m: n >= m, list),
    "maxItems": _length(lambda n, m: n <= m, list),
    "minProperties": _length(lambda n, m: n >= m, dict),
    "maxProperties": _length(lambda n, m: n <= m, dict),
    "pattern": _pattern,
    "anyOf": _combinator(lambda hits, total: hits >= 1),
    "allOf": _combinator(lambda hits, total: hits == total),
    "oneOf": _combinator(lambda hits, total: hits == 1),
    "not": _not,
}
