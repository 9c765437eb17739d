"""Validate inputs and outputs against a resource type's JSON Schemas.

Errors name each offending field by its JSON path (``inputProperties.keys[1].name``)
so a person can find it in their Nix expression.  Values of properties marked
``x-sensitive`` are never quoted.  jsonschema is the authority, but it is
imported only when :mod:`quickcheck` cannot vouch for an instance: it would
be the heaviest import of a provider's start-up.
"""

from __future__ import annotations

from typing import Any, Iterator

from . import quickcheck, redact
from .errors import InvalidInput, NeedsReplacement

__all__ = [
    "validate",
    "with_defaults",
    "register_sensitive",
    "check_replacements",
    "format_path",
    "walk",
]

_validators: dict[int, Any] = {}
_quick: dict[int, tuple[dict, Any]] = {}


def _quick_check(schema: dict[str, Any]):
    found = _quick.get(id(schema))
    if found is None or found[0] is not schema:
        found = _quick[id(schema)] = (schema, quickcheck.compile(schema))
    return found[1]


def _validator(schema: dict[str, Any]):
    found = _validators.get(id(schema))
    if found is None or found.schema is not schema:
        from jsonschema.validators import validator_for

        cls = validator_for(schema)
        found = _validators[id(schema)] = cls(schema)
    return found


def format_path(root: str, path: Any) -> str:
    """``root.a.b[1].c`` from a jsonschema path deque."""
    text = root
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _subschema(schema: dict[str, Any], path: Any) -> dict[str, Any]:
    for part in path:
        if isinstance(part, int):
            schema = schema.get("items", {})
        else:
            schema = schema.get("properties", {}).get(part, {})
    return schema


def _explain(error: Any, root: str, schema: dict[str, Any]) -> list[str]:
    where = format_path(root, error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return [
            f"{format_path(root, [*error.absolute_path, name])}: unknown field "
            f"(known here: {', '.join(allowed) or 'none'})"
            for name in extra
        ]
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return [f"{format_path(root, [*error.absolute_path, name])}: required field is missing" for name in missing]
    if error.schema.get("x-sensitive") is True or _subschema(schema, error.absolute_path).get("x-sensitive"):
        return [f"{where}: the value (not shown: it is sensitive) does not satisfy {error.validator!r}"]
    if _has_sensitive(error.schema):
        # A value where a sensitive one may sit (a key given as a bare string
        # instead of {text = ...}) may be that secret: it is not quoted either.
        return [f"{where}: the value (not shown: it may be sensitive) does not satisfy {error.validator!r}"
                + (f" ({error.validator_value!r})" if error.validator == "type" else "")]
    return [f"{where}: {_json_message(error)}"]


def _json_message(error: Any) -> str:
    """jsonschema's message with JSON values (``null``, ``true``) where it quotes Python's reprs."""
    import json

    message = error.message
    for value in (error.instance, error.validator_value):
        if isinstance(value, (str, int, float, bool, type(None), list, dict)) and not isinstance(value, str):
            try:
                message = message.replace(repr(value), json.dumps(value))
            except (TypeError, ValueError):
                pass
    return message


def validate(instance: Any, schema: dict[str, Any], *, root: str, resource: str | None = None) -> None:
    """Raise :class:`InvalidInput` listing every violation, each with its path."""
    check = _quick_check(schema)
    if check is not None and check(instance):
        return  # valid, and jsonschema was never imported
    validator = _validator(schema)
    if validator.is_valid(instance):
        return
    problems: list[str] = []
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        problems.extend(_explain(error, root, schema))
    if problems:
        raise InvalidInput(
            "; ".join(dict.fromkeys(problems)),  # one line per problem, however often it was found
            resource=resource,
            hint="fix these fields; nothing was changed",
        )


def walk(value: Any, schema: dict[str, Any], path: tuple = ()) -> Iterator[tuple[tuple, Any, dict[str, Any]]]:
    """Every (path, value, subschema) inside ``value`` that the schema describes."""
    yield path, value, schema
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                yield from walk(item, properties[key], (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from walk(item, schema["items"], (*path, index))


def with_defaults(instance: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``instance`` with every schema ``default`` filled in, nested ones too."""
    result = _copy(instance)
    _fill(result, schema)
    return result


def _copy(value: Any) -> Any:
    """A deep copy of JSON data; several times faster than copy.deepcopy on it."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _fill(value: Any, schema: dict[str, Any]) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            if key not in value and "default" in sub:
                value[key] = _copy(sub["default"])
            if key in value:
                _fill(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):  # the entries of a map get their defaults too
            for key, item in value.items():
                if key not in properties:
                    _fill(item, extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill(item, schema["items"])


_marks_sensitive: dict[int, tuple[dict, bool]] = {}


def _has_sensitive(schema: Any) -> bool:
    if isinstance(schema, dict):
        return bool(schema.get("x-sensitive")) or any(_has_sensitive(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_sensitive(v) for v in schema)
    return False


def register_sensitive(value: Any, schema: dict[str, Any]) -> None:
    """Hand every value the schema marks ``x-sensitive`` to the redactor.

    Called before validation, so an error about the inputs cannot quote a
    secret; the values need not be valid.  Wherever the mark sits counts:
    under ``properties``, ``additionalProperties``, ``patternProperties``,
    ``items``/``prefixItems``, any branch of ``oneOf``/``anyOf``/``allOf`` or
    ``if``/``then``/``else`` (all branches: masking too much is safe), and
    behind local ``$ref`` s.  Everything under a marked value is secret.
    """
    found = _marks_sensitive.get(id(schema))
    if found is None or found[0] is not schema:
        found = _marks_sensitive[id(schema)] = (schema, _has_sensitive(schema))
    if not found[1]:
        return  # most schemas have no secrets: skip the walk on every request
    for item in sensitive_values(value, schema):
        for leaf in _leaves(item):
            redact.add_secret(leaf)


_BRANCHES = ("oneOf", "anyOf", "allOf")
_CONDITIONALS = ("if", "then", "else", "not")


def sensitive_values(value: Any, schema: Any, root: Any = None) -> Iterator[Any]:
    """Every part of ``value`` that ``schema`` marks ``x-sensitive``, at any depth; iterative."""
    root = schema if root is None else root
    stack = [(value, schema)]
    seen: set[tuple[int, int]] = set()
    while stack:
        item, sub = stack.pop()
        if not isinstance(sub, dict) or (id(item), id(sub)) in seen:
            continue
        seen.add((id(item), id(sub)))  # also ends $ref cycles
        if sub.get("x-sensitive") is True:
            yield item
            continue
        ref = sub.get("$ref")
        if isinstance(ref, str):
            stack.append((item, _resolve(root, ref)))
        for keyword in _BRANCHES:
            if isinstance(sub.get(keyword), list):
                stack.extend((item, branch) for branch in sub[keyword])
        stack.extend((item, sub[keyword]) for keyword in _CONDITIONALS if keyword in sub)
        if isinstance(item, dict):
            properties = sub.get("properties") if isinstance(sub.get("properties"), dict) else {}
            patterns = sub.get("patternProperties") if isinstance(sub.get("patternProperties"), dict) else {}
            extra = sub.get("additionalProperties")
            for key, child in item.items():
                matched = [properties[key]] if key in properties else []
                matched += [p_sub for pattern, p_sub in patterns.items() if _matches(pattern, key)]
                if not matched and isinstance(extra, dict):
                    matched = [extra]
                stack.extend((child, m) for m in matched)
        elif isinstance(item, list):
            prefix = sub.get("prefixItems") if isinstance(sub.get("prefixItems"), list) else []
            items = sub.get("items")
            for index, child in enumerate(item):
                if index < len(prefix):
                    stack.append((child, prefix[index]))
                elif isinstance(items, dict):
                    stack.append((child, items))
                elif isinstance(items, list) and index < len(items):  # the older tuple form
                    stack.append((child, items[index]))


def _resolve(root: Any, ref: str) -> Any:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    target = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return None
    return target


def _matches(pattern: str, key: str) -> bool:
    import re

    try:
        return re.search(pattern, key) is not None
    except re.error:
        return True  # an unreadable pattern: rather mask too much


def _leaves(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            yield item


def check_replacements(
    old: dict[str, Any], new: dict[str, Any], schema: dict[str, Any], *, resource: str | None = None
) -> None:
    """Refuse an update that changes an ``x-replace-on-change`` input."""
    old_values = {path: value for path, value, sub in walk(old, schema) if sub.get("x-replace-on-change")}
    for path, value, sub in walk(new, schema):
        if sub.get("x-replace-on-change") and path in old_values and old_values[path] != value:
            raise NeedsReplacement(
                f"changing this input cannot be done in place (from {old_values[path]!r} to {value!r})",
                resource=resource,
                field=format_path("inputProperties", path),
                hint="delete the resource and create it again with the new value",
            )
