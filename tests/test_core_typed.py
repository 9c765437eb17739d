"""Types that declare attrs classes for their inputs and outputs."""

from __future__ import annotations

import attrs
import pytest

from fediversity_providers import ResourceType, hookimpl
from fediversity_providers.testing import InProcessDriver
from fediversity_providers.testing.conformance import ConformanceFailure, check_classes_match_schema

SCHEMA_IN = {
    "type": "object", "additionalProperties": False, "required": ["memoryMiB"],
    "properties": {"memoryMiB": {"type": "integer", "minimum": 1}, "label": {"type": "string", "default": "x"}},
}
SCHEMA_OUT = {
    "type": "object", "additionalProperties": False, "required": ["memoryBytes", "label"],
    "properties": {"memoryBytes": {"type": "integer"}, "label": {"type": "string"}},
}


@attrs.frozen
class Inputs:
    memory_mib: int = attrs.field(metadata={"wire": "memoryMiB"})
    label: str = "x"


@attrs.frozen
class Outputs:
    memory_bytes: int
    label: str


class Sized(ResourceType):
    name = "sized"
    input_schema, output_schema = SCHEMA_IN, SCHEMA_OUT
    inputs_class, outputs_class = Inputs, Outputs
    seen: list = []

    def create(self, inputs, ctx):
        self.seen.append(inputs)
        return Outputs(memory_bytes=inputs.memory_mib * 2**20, label=inputs.label)

    def read(self, resource, ctx):
        return resource.outputs


class Plugin:
    @hookimpl
    def register_resource_types(self, register):
        register(Sized())


def test_attrs_inputs_are_structured_and_outputs_unstructured_with_wire_names():
    driver = InProcessDriver([Plugin()], entry_points=False)
    outputs = driver.create("sized", {"memoryMiB": 2})
    assert outputs == {"memoryBytes": 2 * 2**20, "label": "x"}
    assert Sized.seen[-1] == Inputs(memory_mib=2, label="x")


def test_class_and_schema_agree_and_a_disagreement_is_caught():
    check_classes_match_schema(Sized())

    @attrs.frozen
    class Drifted:
        memory_mib: int = attrs.field(metadata={"wire": "memoryMiB"})
        label: str  # required here, optional in the schema

    class Bad(Sized):
        inputs_class = Drifted

    with pytest.raises(ConformanceFailure, match="required fields differ"):
        check_classes_match_schema(Bad())
