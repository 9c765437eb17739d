"""Input checking: JSON paths in errors, defaults, secrets, replacement."""

from __future__ import annotations

import pytest

from fediversity_providers import InvalidInput, NeedsReplacement
from fediversity_providers.core import redact, schema

KEYS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z]+$"},
                    "read": {"type": "boolean", "default": True},
                },
            },
        },
        "ssh": {
            "type": "object",
            "default": {},
            "properties": {"port": {"type": "integer", "default": 22}, "host": {"type": "string", "x-replace-on-change": True}},
        },
        "password": {"type": "string", "minLength": 30, "x-sensitive": True},
    },
}


def test_errors_carry_the_json_path_of_each_offending_field():
    with pytest.raises(InvalidInput) as caught:
        schema.validate({"keys": [{"name": "ok"}, {"name": "x y"}, {}], "bogus": 1}, KEYS, root="inputProperties")
    text = str(caught.value)
    assert "inputProperties.keys[1].name: 'x y' does not match '^[a-z]+$'" in text
    assert "inputProperties.keys[2].name: required field is missing" in text
    assert "inputProperties.bogus: unknown field (known here: keys, password, ssh)" in text


def test_defaults_are_filled_in_nested_objects_and_list_items_without_touching_the_original():
    original = {"keys": [{"name": "a"}, {"name": "b", "read": False}]}
    filled = schema.with_defaults(original, KEYS)
    assert filled == {"keys": [{"name": "a", "read": True}, {"name": "b", "read": False}], "ssh": {"port": 22}}
    assert original == {"keys": [{"name": "a"}, {"name": "b", "read": False}]}


def test_sensitive_values_are_never_quoted_and_are_masked_once_registered():
    with pytest.raises(InvalidInput) as caught:
        schema.validate({"password": "hunter2-canary"}, KEYS, root="inputProperties")
    assert "hunter2-canary" not in str(caught.value)
    assert "inputProperties.password: the value (not shown: it is sensitive)" in str(caught.value)
    schema.register_sensitive({"password": "hunter3-canary"}, KEYS)
    assert redact.scrub("token is hunter3-canary.") == f"token is {redact.MASK}."


def test_replace_on_change_is_refused_with_the_field_path():
    schema.check_replacements({"ssh": {"host": "a"}}, {"ssh": {"host": "a", "port": 2}}, KEYS)
    with pytest.raises(NeedsReplacement) as caught:
        schema.check_replacements({"ssh": {"host": "a"}}, {"ssh": {"host": "b"}}, KEYS, resource="t")
    assert str(caught.value).startswith("t: needs replacement: inputProperties.ssh.host:")
