"""The lifecycle every resource type must get right, as a reusable check.

Point it at a driver, a type and two sets of sample inputs:

    from fediversity_providers.testing import InProcessDriver, conformance

    def test_my_type_conforms(tmp_path):
        conformance.check(InProcessDriver(), "my_type", {...}, {...})
        conformance.check_invalid_inputs(InProcessDriver(), "my_type", {...})

``check`` runs create -> read equals the outputs -> update -> read -> the
same inputs again change nothing -> delete -> delete again succeeds -> read
after delete says it is gone -> a fresh create with the updated inputs reads
as the updated one did (the update took effect).  Each failure names its step;
authors add checks per step (``checks=``) and a ``check_destroy``.  Inputs
are sent as NixOps4 sends them (unset options as defaults and ``null``).  ``check_invalid_inputs`` feeds hypothesis-made
schema-invalid inputs and demands an ``errorResponse`` saying "invalid input",
never a crash.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Mapping

from fediversity_providers.core.errors import InvalidInput, NotFound, ProviderError
from fediversity_providers.core.nulls import drop_nulls
from .drivers import Driver

__all__ = ["check", "as_nixops4_sends", "STEPS", "Check", "check_invalid_inputs", "check_classes_match_schema", "check_state_store", "check_against_upstream", "upstream_schema", "ConformanceFailure"]


class ConformanceFailure(AssertionError):
    """A step of the lifecycle did not behave as the protocol requires."""


def _without(outputs: dict[str, Any], volatile: Iterable[str]) -> dict[str, Any]:
    return {k: v for k, v in outputs.items() if k not in set(volatile)}


def _shown(value: Any) -> str:
    """A value for a failure message: scalars as JSON, masked; containers not spelled out (secrets nest)."""
    import json

    from fediversity_providers.core import redact

    if isinstance(value, (dict, list)):
        return f"({type(value).__name__} of {len(value)})"
    return redact.scrub(json.dumps(value))


def _same(step: str, expected: dict, observed: dict, volatile: Iterable[str]) -> None:
    expected, observed = _without(expected, volatile), _without(observed, volatile)
    if expected != observed:
        changed = sorted(k for k in set(expected) | set(observed) if expected.get(k) != observed.get(k))
        details = ", ".join(f"{k}: {_shown(expected.get(k))} != {_shown(observed.get(k))}" for k in changed)
        raise ConformanceFailure(f"{step}: outputs differ in {details}")


def _reflects(inputs: dict, updated_inputs: dict, observed: dict) -> None:
    """Every changed input that is also an output must read as its new value."""
    stale = [name for name, value in updated_inputs.items()
             if name in observed and inputs.get(name) != value and not isinstance(value, (dict, list))
             and observed[name] != value]
    if stale:
        details = ", ".join(f"{n}: input {_shown(updated_inputs[n])}, read {_shown(observed[n])}" for n in stale)
        raise ConformanceFailure(f"a read after the update does not reflect the new inputs ({details})")


#: A check an author adds to a step: gets the step's inputs and outputs, raises AssertionError.
Check = Callable[[dict[str, Any], "dict[str, Any] | None"], None]

#: The steps ``checks=`` may name.
STEPS = ("create", "update", "re-apply", "delete")


def as_nixops4_sends(inputs: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``inputs`` as NixOps4 sends them through the generated module: every unset option present.

    An option with a default sends the default; an optional one without a
    default sends ``null``; nested objects that are given are filled the same way, and so
    is each entry of a map (``additionalProperties`` with a schema: ``attrsOf submodule``).
    """
    if not isinstance(inputs, dict) or not isinstance(schema, dict):
        return inputs
    properties = schema.get("properties", {})
    if not isinstance(properties, dict) or not (properties or isinstance(schema.get("additionalProperties"), dict)):
        return inputs
    required = set(schema.get("required") or ())
    filled = dict(inputs)
    for name, sub in properties.items():
        if name not in filled:
            if isinstance(sub, dict) and "default" in sub:
                filled[name] = copy.deepcopy(sub["default"])
            elif name not in required:
                filled[name] = None
        elif isinstance(filled[name], dict) and isinstance(sub, dict):
            filled[name] = as_nixops4_sends(filled[name], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):  # the entries of a map (attrsOf submodule): each filled the same way
        for name, value in filled.items():
            if name not in properties:
                filled[name] = as_nixops4_sends(value, extra)
    return filled


class _Steps:
    """Runs named steps; a failure or an error response names the step it happened in."""

    def __init__(self, checks: "Mapping[str, Iterable[Check]]") -> None:
        unknown = set(checks) - set(STEPS)
        if unknown:
            raise ValueError(f"checks for unknown steps {sorted(unknown)}; the steps are {', '.join(STEPS)}")
        self.checks = checks
        self.passed: list[str] = []

    def run(self, name: str, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except ConformanceFailure as failure:
            raise ConformanceFailure(f"step {name!r}: {failure}") from None
        except ProviderError as error:
            raise ConformanceFailure(f"step {name!r}: the provider answered an error: {error}") from None
        self.passed.append(name)
        return result

    def author_checks(self, step: str, inputs: dict[str, Any], outputs: Any) -> None:
        for number, author_check in enumerate(self.checks.get(step, ()), 1):
            label = getattr(author_check, "__name__", f"check {number}")
            try:
                author_check(inputs, outputs)
            except AssertionError as failure:
                if isinstance(failure, ConformanceFailure):
                    raise
                raise ConformanceFailure(f"step {step!r}: check {label} failed: {failure}") from None
            self.passed.append(f"{step}: {label}")


def check(
    driver: Driver,
    type_name: str,
    inputs: dict[str, Any],
    updated_inputs: dict[str, Any],
    *,
    volatile: Iterable[str] = (),
    stateful: bool = True,
    delete_forgets: bool = False,
    checks: "Mapping[str, Iterable[Check]] | None" = None,
    check_destroy: Check | None = None,
    nixops4_nulls: bool = True,
    fresh_create: bool = False,
) -> list[str]:
    """Run the lifecycle; return the steps passed.  ``volatile`` outputs are not compared.

    ``delete_forgets``: the type's delete only forgets a thing it does not own
    (an existing machine, say), so a read after delete still observes it and
    must equal the last outputs instead of saying "not found".
    ``checks``: the author's own checks per step (``create``, ``update``,
    ``re-apply``, ``delete``), each called with that step's inputs and outputs
    (like terraform-plugin-testing's Check functions).
    ``check_destroy``: called after the delete with the last inputs and
    outputs; it raises AssertionError if the thing still exists (CheckDestroy).
    ``nixops4_nulls``: send inputs as NixOps4 does, every unset option present
    (defaults, and ``null`` for optional ones without).

    An update must take effect: a read after it must show every changed input
    that is also an output with its new value.  ``fresh_create``: check more
    strictly that, after the delete, a create with the updated inputs reads
    the same as the updated resource did (for types without identities such
    as ids that differ between creates; ``volatile`` may name those).
    """
    volatile = tuple(volatile)
    if nixops4_nulls:
        schema = driver.input_schema(type_name)
        inputs, updated_inputs = as_nixops4_sends(inputs, schema), as_nixops4_sends(updated_inputs, schema)
    steps = _Steps(checks or {})
    outputs = steps.run("create", lambda: driver.create(type_name, inputs, stateful=stateful))
    live_inputs, live_outputs = inputs, outputs
    try:
        steps.author_checks("create", inputs, outputs)
        observed = steps.run("read after create", lambda: driver.read(type_name, inputs, outputs))
        _same("read after create", outputs, observed, volatile)

        updated = steps.run("update", lambda: driver.update(type_name, inputs, outputs, updated_inputs))
        live_inputs, live_outputs = updated_inputs, updated
        steps.author_checks("update", updated_inputs, updated)
        after_update = steps.run("read after update", lambda: driver.read(type_name, updated_inputs, updated))
        _same("read after update", updated, after_update, volatile)
        steps.run("update takes effect", lambda: _reflects(inputs, updated_inputs, after_update))

        again = steps.run("re-apply", lambda: driver.update(type_name, updated_inputs, updated, updated_inputs))
        live_outputs = again
        _same("re-apply: update with the same inputs", updated, again, volatile)
        steps.author_checks("re-apply", updated_inputs, again)

        steps.run("delete", lambda: driver.delete(type_name, updated_inputs, again))
        live_outputs = None
        steps.author_checks("delete", updated_inputs, None)
        steps.run("delete when already gone", lambda: driver.delete(type_name, updated_inputs, again))
        if check_destroy is not None:
            try:
                check_destroy(updated_inputs, again)
            except AssertionError as failure:
                raise ConformanceFailure(f"step 'check destroy': the resource still exists after delete: {failure}") from None
            steps.passed.append("check destroy")
        if delete_forgets:
            observed = steps.run(
                "read after delete still observes it", lambda: driver.read(type_name, updated_inputs, again))
            _same("read after delete (delete forgets)", again, observed, volatile)
        else:
            try:
                observed = driver.read(type_name, updated_inputs, again)
            except NotFound:
                steps.passed.append("read after delete says not found")
            except ProviderError as error:
                raise ConformanceFailure(f"step 'read after delete': should say 'not found', but said: {error}") from None
            else:
                raise ConformanceFailure(f"step 'read after delete': should say 'not found', but returned {observed!r}")

        if not fresh_create:
            return steps.passed
        fresh = steps.run("create with the updated inputs", lambda: driver.create(type_name, updated_inputs, stateful=stateful))
        live_outputs = fresh
        observed = steps.run("read the fresh one", lambda: driver.read(type_name, updated_inputs, fresh))
        try:
            _same("the update took effect", observed, after_update, volatile)
        except ConformanceFailure as failure:
            raise ConformanceFailure(
                f"step 'update takes effect like a fresh create': a read after the update should show what a create with the "
                f"updated inputs makes, but {str(failure).split(': ', 1)[1]} (fresh create != updated one)"
            ) from None
        steps.passed.append("update takes effect like a fresh create")
        steps.run("delete the fresh one", lambda: driver.delete(type_name, updated_inputs, fresh))
        live_outputs = None
    finally:
        if live_outputs is not None:  # leave nothing behind when a step failed
            try:
                driver.delete(type_name, live_inputs, live_outputs)
            except ProviderError:
                pass
    return steps.passed


def _mutations(schema: dict[str, Any], valid: dict[str, Any]):
    """A hypothesis strategy of inputs that break ``schema`` in one place."""
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=6,
    )
    properties = schema.get("properties", {})
    required = [name for name in schema.get("required", []) if name in valid]

    def with_value(pair):  # an unknown field added, or a known one replaced
        name, value = pair
        broken = copy.deepcopy(valid)
        broken[name] = value
        return broken

    def without(name):
        broken = copy.deepcopy(valid)
        broken.pop(name, None)
        return broken


    unknown_names = st.text(min_size=1, max_size=12).filter(lambda n: n not in properties)
    strategies = [st.tuples(unknown_names, json_values).map(with_value)]
    if required:
        strategies.append(st.sampled_from(required).map(without))
    if properties:
        strategies.append(st.tuples(st.sampled_from(sorted(properties)), json_values).map(with_value))
    strategies.append(json_values.filter(lambda v: not isinstance(v, dict)))
    return st.one_of(strategies)


def check_invalid_inputs(
    driver: Driver,
    type_name: str,
    valid_inputs: dict[str, Any],
    *,
    schema: dict[str, Any] | None = None,
    max_examples: int = 40,
) -> int:
    """Schema-invalid inputs must get "invalid input", never a crash.  Returns examples tried."""
    from hypothesis import HealthCheck, assume, given, settings
    from jsonschema.validators import validator_for

    if schema is None:
        schema = driver.input_schema(type_name)
    validator = validator_for(schema)(schema)
    tried = 0

    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
    @given(_mutations(schema, valid_inputs))
    def invalid_inputs_are_refused(inputs):
        nonlocal tried
        # null where the schema admits none is absent (core/nulls), so not invalid by itself.
        assume(not validator.is_valid(drop_nulls(inputs, schema) if isinstance(inputs, dict) else inputs))
        message = {"createResourceRequest": {"type": type_name, "inputProperties": inputs, "isStateful": True}}
        if not isinstance(inputs, dict):
            response = driver.send(message)
            assert "errorResponse" in response, response
            tried += 1
            return
        try:
            outputs = driver.create(type_name, inputs)
        except InvalidInput:
            tried += 1
            return
        except ProviderError as error:
            raise ConformanceFailure(f"invalid inputs {inputs!r} gave {error.kind!r}, not 'invalid input': {error}")
        raise ConformanceFailure(f"invalid inputs {inputs!r} were accepted: {outputs!r}")

    invalid_inputs_are_refused()
    return tried


def check_classes_match_schema(resource_type: Any) -> None:
    """A type's attrs ``inputs_class``/``outputs_class`` and its schemas name the same fields.

    Same wire names, and a field without a default is exactly a required one.
    """
    import attrs

    from fediversity_providers.core.messages import to_camel

    pairs = (("inputs", resource_type.inputs_class, resource_type.input_schema),
             ("outputs", resource_type.outputs_class, resource_type.output_schema))
    for side, cls, schema in pairs:
        if cls is None:
            continue
        fields = {f.metadata.get("wire") or to_camel(f.name): f for f in attrs.fields(cls)}
        properties = set(schema.get("properties", {}))
        if set(fields) != properties:
            raise ConformanceFailure(
                f"{resource_type.name} {side}: class {cls.__name__} has {sorted(set(fields) - properties)} "
                f"that the schema lacks, and lacks {sorted(properties - set(fields))}"
            )
        required = {name for name, f in fields.items() if f.default is attrs.NOTHING}
        if required != set(schema.get("required", [])):
            raise ConformanceFailure(
                f"{resource_type.name} {side}: required fields differ: class {sorted(required)}, "
                f"schema {sorted(schema.get('required', []))}"
            )


# --------------------------------------------------------------------------- state stores

#: What NixOps4 main (53d8554) writes as ``nixopsVersion``.
NIXOPS_VERSION = "0.1.0"


def upstream_schema(name: str, path: str | None = None) -> dict[str, Any]:
    import json
    from pathlib import Path

    from .reference import reference_path

    where = Path(path) if path else reference_path("nixops4", "rust", "nixops4-resource", name)
    if not where.is_file():
        raise ConformanceFailure(
            f"upstream NixOps4's {name} is not at {where}: pass its path (from NixOps4's "
            f"rust/nixops4-resource/) as the schema argument"
        )
    return json.loads(where.read_text())


def check_against_upstream(document: Any, schema: dict[str, Any], definition: str, step: str) -> None:
    """Validate ``document`` against ``#/definitions/<definition>`` of an upstream schema."""
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    # Upstream refers to schemastore.org's JSON Patch schema; offline, an
    # array of RFC 6902 operations stands in for it.
    patch = {"type": "array", "items": {"type": "object", "required": ["op", "path"],
                                        "properties": {"op": {"enum": ["add", "remove", "replace",
                                                                       "move", "copy", "test"]},
                                                       "path": {"type": "string"}}}}
    registry = Registry().with_resources([
        ("https://json.schemastore.org/json-patch.json", Resource.from_contents(patch, default_specification=DRAFT4)),
        (schema["$id"], Resource.from_contents(schema, default_specification=DRAFT4)),
    ])
    validator = Draft4Validator({"$ref": f"{schema['$id']}#/definitions/{definition}"}, registry=registry)
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(document)]
    if problems:
        raise ConformanceFailure(f"step {step!r}: not upstream's {definition}: {'; '.join(problems)}")


def check_state_store(
    driver: Driver,
    type_name: str,
    inputs: dict[str, Any],
    *,
    state_schema: str | None = None,
    resource_schema: str | None = None,
) -> list[str]:
    """Drive a state-store type as NixOps4 main does on two applies; return the steps passed.

    Each apply creates the store again (``isStateful: false``) and reads the
    state, which must be NixOps4's state document (upstream's
    ``state-schema-v0.json``); the first apply records a member's create, the
    second its update and another member's create, as ``stateResourceEvent``s with
    JSON Patch arrays (each checked against upstream's ``resource-schema-v0.json``).
    ``inputs`` should name a fresh store (a file that does not exist yet, say).
    """
    from fediversity_providers.core import messages as m
    from fediversity_providers.core.statestore import apply_patch, empty_state

    state_doc = upstream_schema("state-schema-v0.json", state_schema)
    protocol = upstream_schema("resource-schema-v0.json", resource_schema)
    steps: list[str] = []

    def step(name: str, call):
        try:
            return call()
        except ProviderError as error:
            raise ConformanceFailure(f"step {name!r}: the provider answered an error: {error}") from None

    def read(name: str, outputs: dict) -> dict:
        request = m.StateResourceReadRequest(m.ResourceState(type_name, inputs, outputs))
        check_against_upstream(m.converter.unstructure(request), protocol, "StateResourceReadRequest", name)
        state = step(name, lambda: driver.request(request)).state
        check_against_upstream(state, state_doc, "State", name)
        return state

    def event(name: str, outputs: dict, kind: str, patch: list) -> None:
        request = m.StateResourceEvent(m.ResourceState(type_name, inputs, outputs), kind, patch, NIXOPS_VERSION)
        check_against_upstream(m.converter.unstructure(request), protocol, "StateResourceEvent", name)
        step(name, lambda: driver.request(request))

    member = {"type": "example", "input_properties": {"size": 1}, "output_properties": {"id": "a1"}}
    expected = empty_state()
    # Apply 1: the store is created, its (empty) state read, a member created.
    outputs = step("apply 1: create the store", lambda: driver.create(type_name, inputs, stateful=False))
    steps.append("apply 1: create the store")
    state = read("apply 1: read the state", outputs)
    if state != expected:
        raise ConformanceFailure(f"step 'apply 1: read the state': a new store must hold the empty state "
                                 f"{expected!r}, but holds {state!r}")
    steps.append("apply 1: the state is the empty state document")
    patch = [{"op": "add", "path": "/resources/web", "value": member}]
    event("apply 1: record the member's create", outputs, "create", patch)
    expected = apply_patch(expected, patch)
    steps.append("apply 1: create event")
    # Apply 2: NixOps4 creates the store again; the state must survive it.
    outputs = step("apply 2: create the store again", lambda: driver.create(type_name, inputs, stateful=False))
    state = read("apply 2: read the state", outputs)
    if state != expected:
        raise ConformanceFailure(f"step 'apply 2: read the state': the state of apply 1 must survive the "
                                 f"store's create being sent again; expected {expected!r}, got {state!r}")
    steps.append("apply 2: create again keeps the state")
    patch = [{"op": "replace", "path": "/resources/web/input_properties/size", "value": 2},
             {"op": "replace", "path": "/resources/web/output_properties/id", "value": "a2"}]
    event("apply 2: record the member's update", outputs, "update", patch)
    expected = apply_patch(expected, patch)
    # (NixOps4 also records nested deployments under /deployments, but upstream's
    # state-schema-v0.json still allows no entries there: not sent here.)
    patch = [{"op": "add", "path": "/resources/db", "value": member}]
    event("apply 2: record another member's create", outputs, "create", patch)
    expected = apply_patch(expected, patch)
    state = read("apply 2: read the state after the events", outputs)
    if state != expected:
        raise ConformanceFailure(f"step 'apply 2: read the state after the events': the patches were not "
                                 f"applied; expected {expected!r}, got {state!r}")
    steps.append("apply 2: update events applied as JSON Patch")
    return steps
