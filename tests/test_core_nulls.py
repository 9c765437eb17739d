"""null means absent: NixOps4 sends ``null`` for every optional option nobody set."""

from __future__ import annotations

import types

import pytest

from fediversity_providers import InvalidInput, ResourceType, hookimpl
from fediversity_providers.core import nulls
from fediversity_providers.testing import InProcessDriver

from support import require_greeting_plugin


class Echo(ResourceType):
    """Outputs exactly the inputs it was given, so a test sees what a plugin sees."""

    name = "test_echo"
    input_schema = {
        "type": "object", "additionalProperties": False, "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "colour": {"type": "string", "default": "blue"},
            "comment": {"type": "string"},
            "maybe": {"type": ["string", "null"], "default": "x"},
            "flag": {"type": "boolean"},
            "inner": {
                "type": "object", "additionalProperties": False,
                "properties": {"port": {"type": "integer", "default": 22}, "host": {"type": "string"}},
            },
            "items": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}}}},
        },
    }
    output_schema = {"type": "object"}

    def create(self, inputs, ctx):
        return {"seen": inputs}


@pytest.fixture
def driver():
    @hookimpl
    def register_resource_types(register):
        register(Echo())

    with InProcessDriver([types.SimpleNamespace(register_resource_types=register_resource_types)],
                         entry_points=False) as d:
        yield d


def test_nulls_are_absent_where_the_schema_admits_no_null(driver):
    sent = {"name": "a", "colour": None, "comment": None, "maybe": None, "flag": None,
            "inner": {"port": None, "host": None}, "items": [{"id": None}]}
    seen = driver.create("test_echo", sent)["seen"]
    # The default applies, the plugin never sees the null; where null is a value, it stays.
    assert seen == {"name": "a", "colour": "blue", "maybe": None, "inner": {"port": 22}, "items": [{}]}


def test_a_required_null_is_still_missing(driver):
    with pytest.raises(InvalidInput, match="inputProperties.name: required field is missing"):
        driver.create("test_echo", {"name": None})


def test_messages_print_json_values(driver):
    with pytest.raises(InvalidInput) as caught:
        driver.create("test_echo", {"name": "a", "colour": True, "inner": {"port": False}})
    message = str(caught.value)
    assert "true is not of type \"string\"" in message or "true is not of type 'string'" in message
    assert "false is not of type" in message
    assert "True" not in message and "False" not in message and "None" not in message


def test_the_fixture_greeting_takes_nulls_as_nixops4_sends_them(tmp_path):
    require_greeting_plugin()
    with InProcessDriver() as driver:
        out = driver.create("greeting", {"directory": str(tmp_path), "name": "Ann", "greeting": None, "noisy": None})
    assert out["text"] == "Hello, Ann!"


def test_admits_null_follows_the_schema():
    assert nulls.admits_null({}) and nulls.admits_null({"type": ["string", "null"]})
    assert not nulls.admits_null({"type": "string"}) and not nulls.admits_null({"enum": ["a"]})
    assert nulls.admits_null({"anyOf": [{"type": "string"}, {"type": "null"}]})
    assert not nulls.admits_null({"$ref": "#/$defs/s"}, {"$defs": {"s": {"type": "string"}}})


MAP = {"type": "object", "additionalProperties": False, "properties": {"files": {
    "type": "object", "default": {}, "additionalProperties": {
        "type": "object", "additionalProperties": False,
        "properties": {"text": {"type": "string"}, "path": {"type": ["string", "null"]},
                       "mode": {"type": "string", "default": "0400"}}}}}}


def test_map_entries_lose_their_nulls_and_get_their_defaults():
    from fediversity_providers.core import schema
    from fediversity_providers.testing.conformance import as_nixops4_sends

    sent = {"files": {"a": {"text": None, "path": None, "mode": "0600"}, "b": None}}
    dropped = nulls.drop_nulls(sent, MAP)
    assert dropped == {"files": {"a": {"path": None, "mode": "0600"}, "b": None}}, "an entry itself is kept"
    assert schema.with_defaults({"files": {"a": {"text": "x"}}}, MAP) == {
        "files": {"a": {"text": "x", "mode": "0400"}}}
    assert as_nixops4_sends({"files": {"a": {"text": "x"}}}, MAP) == {
        "files": {"a": {"text": "x", "path": None, "mode": "0400"}}}
