"""Messages: the attrs classes agree with schemas/protocol.json and round-trip."""

from __future__ import annotations

import json

import attrs
from hypothesis import given, strategies as st

from fediversity_providers.core import messages as m
from fediversity_providers.core.errors import (AccessDenied, ErrorResponse, InvalidInput, NotFound,
                                               ProviderError, from_message)

from support import assert_protocol_message, protocol_validator

objects = st.dictionaries(st.text(max_size=6), st.none() | st.integers() | st.text(max_size=6), max_size=3)
states = st.builds(m.ResourceState, st.text(max_size=8), objects, st.none() | objects)
MESSAGES = st.one_of(
    st.builds(m.CreateResourceRequest, st.text(max_size=8), objects, st.booleans()),
    st.builds(m.UpdateResourceRequest, states, objects),
    st.builds(m.ReadResourceRequest, states),
    st.builds(m.DeleteResourceRequest, states),
    st.builds(m.StateResourceReadRequest, states),
    st.builds(m.StateResourceEvent, states, st.text(max_size=5), st.lists(objects, max_size=2),
              st.none() | st.text(max_size=5)),
    st.builds(m.DestroyResourceRequest, states),
    st.just(m.DestroyResourceResponse()),
    st.builds(m.CreateResourceResponse, objects),
    st.builds(m.UpdateResourceResponse, objects),
    st.builds(m.ReadResourceResponse, objects),
    st.just(m.DeleteResourceResponse()),
    st.builds(m.StateResourceReadResponse, objects),
    st.just(m.StateResourceEventResponse()),
    st.builds(m.ErrorResponse, st.text(max_size=20)),
)


@given(MESSAGES)
def test_every_message_round_trips_and_matches_the_published_schema(message):
    wire = m.encode(message)
    assert wire.endswith(b"\n") and wire.count(b"\n") == 1
    value = json.loads(wire)
    assert_protocol_message(value)
    if isinstance(message, m.ErrorResponse):  # an error's control characters are written as escapes
        from fediversity_providers.core.printable import printable
        message = m.ErrorResponse(printable(message.message))
    assert m.decode(value) == message


def test_classes_and_schema_name_the_same_kinds_and_fields():
    defs = protocol_validator().schema["$defs"]
    for kind, cls in m.KINDS.items():
        body = defs[kind]["properties"][kind]
        wire_fields = {m.to_camel(f.name) for f in attrs.fields(cls)}
        assert set(body["properties"]) == wire_fields, kind
        required = {m.to_camel(f.name) for f in attrs.fields(cls) if f.default is attrs.NOTHING}
        assert set(body["required"]) == required, kind


def test_the_hot_path_and_the_classes_know_the_same_kinds():
    from fediversity_providers.core import wire

    assert set(wire.REQUEST_KINDS) == set(m.REQUEST_KINDS)
    assert set(wire.RESPONSE_KINDS) == set(m.KINDS) - set(m.REQUEST_KINDS)


def test_error_kinds_survive_the_wire():
    for error in (NotFound("gone", resource="t"), InvalidInput("bad", field="inputProperties.x", resource="t"),
                  AccessDenied("no", resource="t", hint="fix the key")):
        back = from_message(str(error))
        assert type(back) is type(error) and str(back) == str(error)
    foreign = from_message("memo: something odd")
    assert isinstance(foreign, ErrorResponse) and isinstance(foreign, ProviderError)
