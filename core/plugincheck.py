"""What a resource type must get right to be served, checked when it is registered.

A plugin's mistakes should surface when it loads, saying what to fix, not as
"internal error" on some later request.  Three depths, by cost:

- :func:`registration_problems` — the name and the methods; no schema is
  loaded.  Every type, at every start.
- :func:`schema_problems` — the schemas are objects, ``x-sensitive`` and
  ``x-replace-on-change`` sit where they mean something.  On a type's first
  use (``serve`` loads only the schemas of the type a request names), and for
  every type in ``types``, ``plugins`` and the test drivers.
- :func:`metaschema_problems` — the schemas are valid JSON Schema, by
  jsonschema's metaschema.  jsonschema costs several interpreter starts to
  import, so ``serve`` runs it only when jsonschema is needed for the type
  anyway (the quick validator cannot vouch for a schema); ``plugins
  --check`` and the test drivers run it always.
"""

from __future__ import annotations

from typing import Any, Iterator

__all__ = ["registration_problems", "schema_problems", "metaschema_problems", "snake_case"]

# Keywords whose value is one schema, a list of schemas, or a mapping to schemas.
_ONE = ("additionalProperties", "items", "not", "if", "then", "else", "contains", "propertyNames",
        "additionalItems", "unevaluatedItems", "unevaluatedProperties")
_LIST = ("oneOf", "anyOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_MARKS = ("x-sensitive", "x-replace-on-change")


def snake_case(name: object) -> bool:
    """``existing_vm``: lowercase ASCII words joined by single underscores."""
    if not isinstance(name, str) or not name.isascii() or not name.isidentifier():
        return False
    words = name.split("_")
    return name == name.lower() and name[0].isalpha() and all(words)


def registration_problems(resource_type: Any) -> list[str]:
    """What is wrong with a type, without loading its schemas."""
    from .resource import ResourceType

    if not isinstance(resource_type, ResourceType):
        return [f"{resource_type!r} is not a ResourceType instance: register an instance of a ResourceType subclass"]
    problems = []
    name = getattr(resource_type, "name", None)
    if name is None:
        problems.append(f"{type(resource_type).__name__} has no `name`: set name = \"my_type\" (snake_case)")
    elif not snake_case(name):
        problems.append(f"the type name {name!r} is not snake_case: use lowercase words joined by `_`, "
                        "like `existing_vm`, as NixOps4's own types are")
    cls = type(resource_type)
    required = ["create"] + (["state_read", "state_event"] if getattr(cls, "is_state_store", False) else [])
    for method in required:
        if getattr(cls, method, None) is getattr(ResourceType, method):
            problems.append(f"{cls.__name__} does not implement `{method}`: define {method}() on the class")
    for method in ("create", "read", "update", "delete", "state_read", "state_event"):
        if not callable(getattr(resource_type, method, None)):
            problems.append(f"{cls.__name__}.{method} is not callable: it must be a method")
    if not isinstance(getattr(cls, "requires_state", False), bool):
        problems.append(f"{cls.__name__}.requires_state must be True or False")
    return problems


def _schema_nodes(schema: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (path, subschema) of a JSON Schema, following the keywords that hold schemas."""
    stack = [(path, schema)]
    while stack:
        where, node = stack.pop()
        yield where, node
        if not isinstance(node, dict):
            continue
        for keyword in _ONE:
            if isinstance(node.get(keyword), (dict, bool)):
                stack.append((f"{where}.{keyword}", node[keyword]))
        for keyword in _LIST:
            if isinstance(node.get(keyword), list):
                stack.extend((f"{where}.{keyword}[{i}]", sub) for i, sub in enumerate(node[keyword]))
        for keyword in _MAP:
            if isinstance(node.get(keyword), dict):
                stack.extend((f"{where}.{keyword}.{key}", sub) for key, sub in node[keyword].items())


def _loaded(resource_type: Any, attribute: str) -> tuple[Any, str | None]:
    try:
        return getattr(resource_type, attribute), None
    except Exception as exc:  # a missing schemas/<name>.json, say
        return None, f"{attribute} cannot be loaded ({type(exc).__name__}: {exc}): set {attribute} to a JSON Schema dict"


def schema_problems(resource_type: Any) -> list[str]:
    """What is wrong with a type's schemas, short of JSON Schema validity."""
    problems = []
    for attribute in ("input_schema", "output_schema"):
        schema, problem = _loaded(resource_type, attribute)
        if problem:
            problems.append(problem)
            continue
        if not isinstance(schema, dict):
            problems.append(f"{attribute} is {type(schema).__name__}, not a JSON Schema dict")
            continue
        if schema.get("type") != "object":
            problems.append(f"{attribute} must describe an object (\"type\": \"object\"): "
                            f"{'inputProperties' if attribute == 'input_schema' else 'outputProperties'} is one")
        top = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        for where, node in _schema_nodes(schema, attribute):
            if not isinstance(node, (dict, bool)):
                problems.append(f"{where}: {node!r} is not a schema (an object or a boolean)")
                continue
            if not isinstance(node, dict):
                continue
            for mark in _MARKS:
                if mark in node and not isinstance(node[mark], bool):
                    problems.append(f"{where}.{mark}: must be true or false, not {node[mark]!r}")
            if where.endswith(".propertyNames") and node.get("x-sensitive"):
                problems.append(f"{where}: x-sensitive on property names means nothing (names are not masked): "
                                "mark the values instead")
            if node.get("x-replace-on-change"):
                on_top = attribute == "input_schema" and any(
                    where == f"input_schema.properties.{key}" for key in top)
                if not on_top:
                    problems.append(f"{where}: x-replace-on-change means something only on a top-level input "
                                    "property (input_schema.properties.<name>): move it there")
            properties = node.get("properties")
            if isinstance(properties, dict):
                for mark in _MARKS:
                    if mark in properties and not isinstance(properties[mark], dict):
                        problems.append(f"{where}.properties: {mark!r} is written as a property name; "
                                        "put it inside the property's own schema")
    return problems


def metaschema_problems(resource_type: Any) -> list[str]:
    """Whether each schema is valid JSON Schema for the draft it names (2020-12 by default)."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    problems = []
    for attribute in ("input_schema", "output_schema"):
        schema, problem = _loaded(resource_type, attribute)
        if problem or not isinstance(schema, (dict, bool)):
            continue  # schema_problems says so
        cached = _metaschema_verdicts.get(id(schema))
        if cached is None or cached[0] is not schema:  # each driver checks again: keep the verdict
            try:
                validator_for(schema).check_schema(schema)
                verdict = None
            except SchemaError as error:
                verdict = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path), \
                    error.message
            cached = _metaschema_verdicts[id(schema)] = (schema, verdict)
        if cached[1] is not None:
            where, message = cached[1]
            problems.append(f"{attribute}{where} is not valid JSON Schema: {message}")
    return problems


_metaschema_verdicts: dict[int, tuple[Any, Any]] = {}
