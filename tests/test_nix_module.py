"""The NixOps4 provider module generator: JSON Schema -> NixOS options, evaluated by real Nix."""

from __future__ import annotations

import copy
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fediversity_providers import PluginError, ResourceType, hookimpl
from fediversity_providers.core import nixmodule
from fediversity_providers.core.plugins import Registry
from fediversity_providers.testing.nixeval import NixError, accepts, nix_eval, nix_parse, provider_module

TRICKY = 'say "hi" \\ to ${name} and $HOME\nsecond line\ttab'

KITCHEN_INPUTS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "ssh", "mode", "either"],
    "$defs": {
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "A TCP port.", "default": 22},
        "tree": {"type": "object", "properties": {"child": {"$ref": "#/$defs/tree"}}, "additionalProperties": False},
    },
    "properties": {
        "name": {"type": "string", "description": TRICKY, "pattern": "^[a-z]+$"},
        "count": {"type": "integer", "description": "How many.", "default": -3},
        "ratio": {"type": "number", "description": "A ratio.", "default": 1e-05},
        "half": {"type": "number", "description": "Half.", "default": 0.5},
        "enabled": {"type": "boolean", "description": "On or off.", "default": True},
        "mode": {"enum": ["fast", "safe"], "description": "Mode.", "x-replace-on-change": True},
        "level": {"enum": ["low", "high", None], "description": "Nullable enum.", "default": None},
        "fixed": {"const": "v1", "description": "Always v1.", "default": "v1"},
        "comment": {"type": ["string", "null"], "description": "Nullable string.", "default": None},
        "optionalText": {"type": "string", "description": "Optional without default."},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags.", "default": ["a", "b"]},
        "anyList": {"type": "array", "description": "Items of any kind.", "default": []},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Labels.", "default": {}},
        "free": {"type": "object", "description": "Anything goes.", "default": {"k": [1, {"x": None}]}},
        "port": {"$ref": "#/$defs/port"},
        "tree": {"$ref": "#/$defs/tree", "description": "Recursive: any value."},
        "either": {"oneOf": [{"type": "string"}, {"type": "integer"}], "description": "String or int."},
        "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "Int or null.", "default": None},
        "ssh": {
            "type": "object",
            "additionalProperties": False,
            "required": ["host"],
            "description": "Connection.",
            "properties": {
                "host": {"type": "string", "description": "Host."},
                "port": {"type": "integer", "description": "Port.", "default": 22},
                "options": {
                    "type": "object",
                    "description": "Nested twice.",
                    "additionalProperties": False,
                    "default": {},
                    "properties": {"timeout": {"type": "integer", "description": "Seconds.", "default": 10}},
                },
            },
        },
        "rules": {
            "type": "array",
            "description": "A list of objects.",
            "default": [],
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id"],
                "properties": {"id": {"type": "string", "description": "Id."},
                               "weight": {"type": ["integer", "string", "null"], "description": "Mixed.", "default": 1}},
            },
        },
        "with": {"type": "string", "description": "A Nix keyword as a name.", "default": "x"},
        "dotted.name": {"type": "string", "description": "Needs quoting.", "default": "y"},
        "extras": {
            "type": "object",
            "description": "Known keys plus free ones.",
            "properties": {"known": {"type": "string", "description": "Known.", "default": "k"}},
            "additionalProperties": {"type": "integer"},
            "default": {},
        },
    },
}

KITCHEN_OUTPUTS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "token"],
    "properties": {
        "id": {"type": "string", "description": "Identifier."},
        "token": {"type": "string", "description": "A secret.", "x-sensitive": True},
        "address": {"type": ["string", "null"], "description": "Maybe an address."},
        "sizes": {"type": "object", "description": "Sizes by name.", "additionalProperties": {"type": "integer"}},
    },
}


class Kitchen(ResourceType):
    name = "kitchen_sink"
    description = "Every JSON Schema construct the generator translates."
    requires_state = True
    input_schema = KITCHEN_INPUTS
    output_schema = KITCHEN_OUTPUTS

    def create(self, inputs, ctx):  # a type must implement create to be registered
        return {}


class Plain(ResourceType):
    name = "aaa_plain"
    input_schema = {"type": "object", "additionalProperties": False, "properties": {}}
    output_schema = {"type": "object"}

    def create(self, inputs, ctx):
        return {}


class FixturePlugin:
    @hookimpl
    def register_resource_types(self, register):
        register(Kitchen())
        register(Plain())


@pytest.fixture(scope="module")
def fixture_registry():
    return Registry(plugins=[FixturePlugin()], entry_points=False)


@pytest.fixture(scope="module")
def evaluated(fixture_registry, tmp_path_factory):
    path = tmp_path_factory.mktemp("nixmodule") / "provider.nix"
    path.write_text(nixmodule.render(fixture_registry))
    nix_parse(path)
    return provider_module(path, executable="/opt/fp/bin/fediversity-provider")


def test_module_shape_evaluates_with_debian_nix(evaluated):
    assert evaluated["executable"] == "/opt/fp/bin/fediversity-provider"
    assert evaluated["args"] == ["serve"]
    assert sorted(evaluated["resourceTypes"]) == ["aaa_plain", "kitchen_sink"]
    kitchen = evaluated["resourceTypes"]["kitchen_sink"]
    assert kitchen["description"] == Kitchen.description
    assert kitchen["requireState"] is True
    plain = evaluated["resourceTypes"]["aaa_plain"]
    assert plain == {"description": "aaa_plain", "requireState": False,
                     "inputs": {"options": {}}, "outputs": {"options": {}}}


def _walk(options: dict, schema: dict, path: str):
    """(path, option, property schema, required) for every option, nested ones too."""
    required = set(schema.get("required", ()))
    defs = KITCHEN_INPUTS["$defs"]
    assert sorted(options) == sorted(schema.get("properties", {})), path
    for name, option in options.items():
        prop = schema["properties"][name]
        if "$ref" in prop and prop["$ref"] == "#/$defs/port":
            prop = {**defs["port"], **prop}
        yield f"{path}.{name}", option, prop, name in required
        opt_type = option["type"]
        while opt_type["name"] in ("nullOr", "listOf", "attrsOf"):
            opt_type = opt_type["elem"]
        sub = prop.get("items", prop) if prop.get("type") == "array" else prop
        if opt_type["name"] == "submodule" and sub.get("properties"):
            yield from _walk(opt_type["options"], sub, f"{path}.{name}")


def test_option_names_defaults_and_descriptions_follow_the_schema(evaluated, fixture_registry):
    kitchen = evaluated["resourceTypes"]["kitchen_sink"]
    seen = 0
    # The inputs NixOps4 sends: the type's own, and the core's allowReplacement.
    wired = fixture_registry.get("kitchen_sink").wire_input_schema
    assert wired["properties"]["allowReplacement"]["default"] is False
    for side, schema in (("inputs", wired), ("outputs", KITCHEN_OUTPUTS)):
        for path, option, prop, required in _walk(kitchen[side]["options"], schema, side):
            seen += 1
            if "default" in prop:
                expected = prop["default"]
                if isinstance(expected, float):  # Nix prints floats its own way
                    expected = pytest.approx(expected)
                assert option["hasDefault"] and option["default"] == expected, path
            elif required:
                assert not option["hasDefault"], f"{path} is required: no default"
            else:
                assert option["hasDefault"] and option["default"] is None, path
                assert nixmodule.UNSET_NOTE in option["description"], path
            assert option["description"].startswith(prop.get("description", "")), path
            assert (nixmodule.SENSITIVE_NOTE in option["description"]) == bool(prop.get("x-sensitive")), path
            assert (nixmodule.REPLACE_NOTE in option["description"]) == bool(prop.get("x-replace-on-change")), path
    assert seen > 30
    inputs = kitchen["inputs"]["options"]
    assert inputs["name"]["description"] == TRICKY  # quotes, backslash, ${...}, newline survive
    assert inputs["count"]["default"] == -3
    assert inputs["ratio"]["default"] == pytest.approx(1e-05)
    assert inputs["free"]["default"] == {"k": [1, {"x": None}]}
    assert inputs["port"]["description"] == "A TCP port." and inputs["port"]["default"] == 22


def test_option_types(evaluated):
    inputs = evaluated["resourceTypes"]["kitchen_sink"]["inputs"]["options"]
    t = {name: option["type"] for name, option in inputs.items()}
    assert t["name"] == {"_type": "option-type", "name": "str"}
    assert t["count"]["name"] == "int" and t["ratio"]["name"] == "number" and t["enabled"]["name"] == "bool"
    assert t["mode"]["values"] == ["fast", "safe"]
    assert t["level"]["name"] == "nullOr" and t["level"]["elem"]["values"] == ["low", "high"]
    assert t["fixed"]["values"] == ["v1"]
    assert t["comment"]["name"] == "nullOr" and t["comment"]["elem"]["name"] == "str"
    assert t["optionalText"]["name"] == "nullOr"
    assert t["tags"]["name"] == "listOf" and t["tags"]["elem"]["name"] == "str"
    assert t["anyList"]["elem"]["name"] == "anything"
    assert t["labels"]["name"] == "attrsOf" and t["labels"]["elem"]["name"] == "str"
    assert t["free"]["name"] == "attrsOf" and t["free"]["elem"]["name"] == "anything"
    tree = t["tree"]["elem"]  # optional without default: nullOr
    assert t["tree"]["name"] == "nullOr" and tree["name"] == "submodule"
    assert tree["options"]["child"]["type"]["name"] == "anything"  # the recursion stops here
    assert [e["name"] for e in t["either"]["elems"]] == ["str", "int"]
    assert t["maybe"]["name"] == "nullOr" and t["maybe"]["elem"]["name"] == "int"
    assert t["ssh"]["name"] == "submodule" and t["ssh"]["freeformType"] is None
    assert t["rules"]["elem"]["options"]["weight"]["type"]["elem"]["name"] == "oneOf"
    assert t["extras"]["freeformType"] == {"_type": "option-type", "name": "attrsOf",
                                           "elem": {"_type": "option-type", "name": "int"}}
    assert {"with", "dotted.name"} <= set(inputs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_schema_valid_input_passes_the_nix_types(evaluated, data):
    from hypothesis_jsonschema import from_schema

    schema = copy.deepcopy(KITCHEN_INPUTS)
    schema["properties"].pop("tree")  # recursive $ref: hypothesis-jsonschema cannot resolve it
    schema["properties"]["name"].pop("pattern")
    value = data.draw(from_schema(schema))  # a schema-valid instance must pass: the module is never stricter
    options = evaluated["resourceTypes"]["kitchen_sink"]["inputs"]["options"]
    module_type = {"name": "submodule", "options": options, "freeformType": None}
    assert accepts(module_type, value), value


@pytest.mark.parametrize("name, bad", [
    ("count", "3"), ("count", 1.5), ("enabled", "yes"), ("mode", "slow"), ("tags", "a"), ("tags", [1]),
    ("labels", {"a": 1}), ("ssh", {"port": 22}), ("ssh", {"host": "h", "nope": 1}), ("fixed", "v2"),
    ("rules", [{"weight": 1}]), ("either", True), ("either", None), ("extras", {"other": "not an int"}),
])
def test_schema_invalid_values_fail_the_nix_types(evaluated, name, bad):
    options = evaluated["resourceTypes"]["kitchen_sink"]["inputs"]["options"]
    assert not accepts(options[name]["type"], bad)


def test_output_is_deterministic_and_sorted(fixture_registry):
    first = nixmodule.render(fixture_registry)
    shuffled = copy.deepcopy(KITCHEN_INPUTS)
    items = list(shuffled["properties"].items())
    random.Random(7).shuffle(items)
    shuffled["properties"] = dict(items)

    class Shuffled(Kitchen):
        input_schema = shuffled

    class ShuffledPlugin:
        @hookimpl
        def register_resource_types(self, register):
            register(Plain())
            register(Shuffled())

    assert nixmodule.render(Registry(plugins=[ShuffledPlugin()], entry_points=False)) == first
    assert first.index("aaa_plain =") < first.index("kitchen_sink =")
    body = first[first.index("kitchen_sink ="):]
    assert body.index("anyList = ") < body.index("count = ") < body.index("ssh = ")


def test_header_says_generated_and_how(fixture_registry):
    text = nixmodule.render(fixture_registry)
    head = text.split("\n{\n", 1)[0]
    assert "GENERATED by `fediversity-provider nix-module`" in head
    assert nixmodule.COMMAND in head
    assert all(line.startswith("#") for line in head.splitlines())


def test_empty_registry_still_evaluates(tmp_path):
    path = tmp_path / "provider.nix"
    path.write_text(nixmodule.render(Registry(plugins=[], entry_points=False)))
    assert provider_module(path)["resourceTypes"] == {}


def test_module_without_package_or_executable_says_what_to_give(tmp_path):
    path = tmp_path / "provider.nix"
    path.write_text(nixmodule.render(Registry(plugins=[], entry_points=False)))
    with pytest.raises(NixError, match="give `package`"):
        nix_eval(f"((import {path} {{ }}) {{ lib = {{ }}; }}).executable", workdir=tmp_path)
    assert nix_eval(f"((import {path} {{ package = \"/p\"; }}) {{ lib = {{ }}; }}).executable",
                    workdir=tmp_path) == "/p/bin/fediversity-provider"


def test_a_type_without_schemas_is_named_in_the_error():
    class NoSchema(ResourceType):
        name = "no_schema_here"

        def create(self, inputs, ctx):
            return {}

    class NoSchemaPlugin:
        @hookimpl
        def register_resource_types(self, register):
            register(NoSchema())

    with pytest.raises(PluginError, match="'no_schema_here'.*cannot read its schemas"):
        nixmodule.render(Registry(plugins=[NoSchemaPlugin()], entry_points=False))


@pytest.mark.parametrize("text", ["$${x}", "café ✓", "a\x01b", "${", "$", "x$", "''", "\\${"])
def test_awkward_strings_survive_nix(text, tmp_path):
    assert nix_eval(nixmodule.nix_string(text), workdir=tmp_path) == text


def test_module_using_unknown_lib_function_fails_the_harness(tmp_path):
    path = tmp_path / "bad.nix"
    path.write_text("{ executable }: { lib, ... }: { x = lib.types.strMatching \"a\"; }")
    with pytest.raises(NixError, match="strMatching"):
        provider_module(path)


@pytest.mark.parametrize("value", [
    None, True, False, 0, -7, 2**40, 0.25, -1.5, 1e-05, 3e20, "", "a\"b\\c${d}$e\n", [], [1, [2, -3]],
    {}, {"a b": {"c": [None]}, "or": 1, "x-y": 2},
])
def test_nix_literals_round_trip_through_nix(value, tmp_path):
    back = nix_eval(nixmodule.nix_value(value, "  "), workdir=tmp_path)
    assert back == (pytest.approx(value) if isinstance(value, float) else value)


def test_cli_prints_what_render_returns():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "fediversity_providers", "nix-module"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == nixmodule.render(Registry())
