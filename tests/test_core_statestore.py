"""State stores as NixOps4 main uses them: the state document, create kept, JSON Patch events."""

from __future__ import annotations

import json
import types

import pytest

from fediversity_providers import ResourceType, hookimpl
from fediversity_providers.core.statestore import PatchError, apply_patch, empty_state
from fediversity_providers.testing import InProcessDriver, SubprocessDriver, conformance
from fediversity_providers.testing.reference import reference_path

from support import require_greeting_plugin


def test_the_fixture_journal_is_a_state_store_nixops4_can_use(tmp_path):
    require_greeting_plugin()
    for index, driver in enumerate((InProcessDriver(), SubprocessDriver())):
        with driver:
            steps = conformance.check_state_store(driver, "greeting_journal", {"file": str(tmp_path / f"j{index}.json")})
        assert steps[-1] == "apply 2: update events applied as JSON Patch"
    journal = json.loads((tmp_path / "j0.json").read_text())
    assert [e["event"] for e in journal["events"]] == ["create", "update", "create"]
    assert {e["nixopsVersion"] for e in journal["events"]} == {conformance.NIXOPS_VERSION}


def test_the_empty_state_is_upstreams_example():
    example = reference_path("nixops4", "rust", "nixops4-resource", "examples", "state", "v0", "empty.json")
    assert empty_state() == json.loads(example.read_text())


class Forgetful(ResourceType):
    """The old fixture's mistakes: a journal of events as its state, wiped on every create."""

    name = "test_forgetful_store"
    is_state_store = True
    input_schema = {"type": "object", "properties": {"file": {"type": "string"}}}
    output_schema = {"type": "object"}
    document = True

    def create(self, inputs, ctx):
        with open(inputs["file"], "w") as f:
            json.dump(empty_state() if self.document else {"events": []}, f)
        return {}

    def state_read(self, resource, ctx):
        with open(resource.inputs["file"]) as f:
            return json.load(f)

    def state_event(self, resource, event, nixops_version, patch, ctx):
        state = self.state_read(resource, ctx)
        with open(resource.inputs["file"], "w") as f:
            json.dump(apply_patch(state, patch), f)


@pytest.mark.parametrize("document,caught", [(False, "not upstream's State"), (True, "must survive")])
def test_the_suite_catches_a_store_nixops4_could_not_use(tmp_path, document, caught):
    store = Forgetful()
    store.document = document

    @hookimpl
    def register_resource_types(register):
        register(store)

    plugin = types.SimpleNamespace(register_resource_types=register_resource_types)
    with InProcessDriver([plugin], entry_points=False) as driver:
        with pytest.raises(conformance.ConformanceFailure, match=caught):
            conformance.check_state_store(driver, "test_forgetful_store", {"file": str(tmp_path / "s.json")})


def test_json_patch_operations():
    doc = {"a": {"b": [1, 2]}}
    assert apply_patch(doc, [{"op": "add", "path": "/a/b/-", "value": 3}]) == {"a": {"b": [1, 2, 3]}}
    assert apply_patch(doc, [{"op": "replace", "path": "/a/b/0", "value": 9}]) == {"a": {"b": [9, 2]}}
    assert apply_patch(doc, [{"op": "move", "from": "/a/b", "path": "/c"}]) == {"a": {}, "c": [1, 2]}
    assert apply_patch(doc, [{"op": "copy", "from": "/a", "path": "/d"}, {"op": "remove", "path": "/a/b"}]) == {
        "a": {}, "d": {"b": [1, 2]}}
    assert doc == {"a": {"b": [1, 2]}}
    with pytest.raises(PatchError):
        apply_patch(doc, [{"op": "remove", "path": "/nope"}])
    with pytest.raises(PatchError):
        apply_patch(doc, [{"op": "test", "path": "/a/b/0", "value": 5}])
