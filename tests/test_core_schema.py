"""Input checking: JSON paths in errors, defaults, secrets, replacement."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from fediversity_providers import InvalidInput, NeedsReplacement
from fediversity_providers.core import redact, schema
from fediversity_providers.core.printable import printable

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


def test_a_missing_required_field_is_reported_once_each():
    with pytest.raises(InvalidInput) as caught:
        schema.validate({"keys": [{}]}, {"type": "object", "required": ["a", "b", "c"],
                                         "properties": {"keys": KEYS["properties"]["keys"]}}, root="in")
    text = str(caught.value)
    for name in ("in.a", "in.b", "in.c", "in.keys[0].name"):
        assert text.count(f"{name}: required field is missing") == 1, text


SECRETS_EVERYWHERE = {
    "type": "object",
    "$defs": {"token": {"type": "string", "minLength": 64, "x-sensitive": True}},
    "properties": {
        "env": {"type": "object", "additionalProperties": {"type": "string", "x-sensitive": True}},
        "byPattern": {"type": "object", "patternProperties": {"^k": {"type": "string", "x-sensitive": True}}},
        "either": {"oneOf": [{"type": "integer", "x-sensitive": True}, {"type": "boolean"}]},
        "any": {"anyOf": [{"type": "object", "properties": {"pin": {"type": "integer", "x-sensitive": True}}}]},
        "ref": {"$ref": "#/$defs/token"},
        "list": {"type": "array", "items": {"type": "string", "x-sensitive": True}},
        "whole": {"type": "object", "x-sensitive": True},
    },
}


def test_x_sensitive_counts_wherever_it_sits_and_before_validation():
    secrets = {"env": {"A": "env-secret-1"}, "byPattern": {"key": "pattern-secret-2"}, "either": 73917391,
               "any": {"pin": 4242424242}, "ref": "ref-secret-3", "list": ["list-secret-4"],
               "whole": {"deep": ["whole-secret-5"]}}
    schema.register_sensitive(secrets, SECRETS_EVERYWHERE)
    with pytest.raises(InvalidInput) as caught:  # "ref" is too short, "either" is not integer-or-boolean below
        schema.validate({**secrets, "either": "73917391"}, SECRETS_EVERYWHERE, root="inputProperties")
    shown = redact.scrub(str(caught.value) + repr(secrets))
    for value in ("env-secret-1", "pattern-secret-2", "73917391", "4242424242", "ref-secret-3",
                  "list-secret-4", "whole-secret-5"):
        assert value not in shown, value


def test_an_invalid_secret_is_masked_by_the_engine_even_where_the_error_quotes_it():
    from fediversity_providers import ResourceType
    from fediversity_providers.testing import InProcessDriver

    class Vault(ResourceType):
        name = "vault_test"
        input_schema = {"type": "object", "properties": {
            "tokens": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^[a-z]+$",
                                                                  "x-sensitive": True}}}}
        output_schema = {"type": "object"}

        def create(self, inputs, ctx):
            return {}

    driver = InProcessDriver([Vault()], entry_points=False)
    with pytest.raises(InvalidInput) as caught:
        driver.create("vault_test", {"tokens": {"a": "Not-Valid-Secret-6"}})
    assert "Not-Valid-Secret-6" not in str(caught.value) and "inputProperties.tokens.a" in str(caught.value)


secret_texts = st.text(alphabet=st.characters(codec="utf-8"), min_size=6, max_size=20).filter(
    lambda s: s.strip() == s and len(set(s)) > 3)


@settings(max_examples=200, deadline=None)
@given(secret=secret_texts)
def test_a_secret_is_masked_however_it_is_written(secret):
    redact.add_secret(secret)
    spellings = [secret, repr(secret), ascii(secret), json.dumps(secret), json.dumps(secret, ensure_ascii=False),
                 printable(secret), secret.encode("unicode_escape").decode()]
    for spelling in spellings:
        assert secret not in redact.scrub(spelling)
        shown = redact.scrub(f"error: {spelling}!")
        assert redact.MASK in shown, (spelling, shown)
