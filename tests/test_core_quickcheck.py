"""The quick validity check agrees with jsonschema, which stays the authority."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from jsonschema.validators import validator_for

from fediversity_providers.core import quickcheck
from fediversity_providers.core.plugins import BUILTIN_DISTRIBUTION, Registry

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70) | st.floats(-5, 70, allow_nan=False)
    | st.sampled_from([0, 1, 1.0, 2.5, True, False, "", "a", "abc", "10.0.0.1/24", "dhcp"]) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["a", "b", "name", "read", "x", "enable"]) | st.text(max_size=3), inner, max_size=4),
    max_leaves=10,
)

ZOO = [
    {"type": "object", "additionalProperties": False, "required": ["a"],
     "properties": {"a": {"type": "integer", "minimum": 1, "maximum": 64}, "b": {"type": ["string", "null"], "pattern": "^a"}}},
    {"type": "array", "items": {"enum": [1, "a", None, True, {"a": 1}]}, "minItems": 1, "maxItems": 3},
    {"anyOf": [{"const": "dhcp"}, {"type": "object", "required": ["name"], "properties": {"name": {"minLength": 2}}}]},
    {"oneOf": [{"type": "number"}, {"type": "integer"}]},
    {"not": {"type": "string"}, "exclusiveMinimum": 0, "exclusiveMaximum": 10},
    {"type": "object", "additionalProperties": {"type": "boolean"}, "minProperties": 1, "maxProperties": 2},
    {"allOf": [{"type": "string"}, {"maxLength": 2}], "description": "x", "x-sensitive": True, "format": "ipv4"},
]


@pytest.mark.parametrize("schema", ZOO, ids=range(len(ZOO)))
@settings(max_examples=200, deadline=None)
@given(instance=json_values)
def test_quickcheck_agrees_with_jsonschema_on_every_keyword_it_implements(schema, instance):
    check = quickcheck.compile(schema)
    assert check is not None
    assert check(instance) == validator_for(schema)(schema).is_valid(instance)


def test_unknown_keywords_make_it_step_aside():
    assert quickcheck.compile({"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}}) is None
    assert quickcheck.compile({"uniqueItems": True}) is None
    assert quickcheck.compile({"items": [{"type": "string"}]}) is None


def _builtin_schemas():
    registry = Registry(entry_points=True)
    for name, registration in sorted(registry.types.items()):
        if registration.distribution == BUILTIN_DISTRIBUTION:
            yield pytest.param(registration.resource_type.input_schema, id=f"{name}-inputs")
            yield pytest.param(registration.resource_type.output_schema, id=f"{name}-outputs")


@pytest.mark.parametrize("schema", list(_builtin_schemas()))
def test_every_builtin_schema_gets_the_fast_path_and_agrees_with_jsonschema(schema):
    from hypothesis_jsonschema import from_schema

    check = quickcheck.compile(schema)
    assert check is not None, "a built-in schema uses a keyword the quick check does not know"
    validator = validator_for(schema)(schema)
    plain = {k: v for k, v in schema.items() if k != "$schema"}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(from_schema(plain), json_values,
                     st.tuples(from_schema(plain), st.text(max_size=4), json_values).map(
                         lambda t: {**t[0], t[1]: t[2]} if isinstance(t[0], dict) else t[0])))
    def agrees(instance):
        assert check(instance) == validator.is_valid(instance)

    agrees()
