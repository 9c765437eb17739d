"""Every upstream kind ``serve`` sends validates against upstream NixOps4's own schema.

``tests/reference/nixops4/rust/nixops4-resource/resource-schema-v0.json`` is
a verbatim copy of NixOps4 main at 53d8554 (LGPL-2.1, provenance in that
folder's README).  The requests are the ones NixOps4 main sends; each line
``serve`` answers must be one of upstream's ``Response``s.
"""

from __future__ import annotations

import json

from fediversity_providers.testing.conformance import check_against_upstream, upstream_schema

from support import require_greeting_plugin, serve_lines


def line(value: object) -> bytes:
    return json.dumps(value).encode() + b"\n"


def test_every_upstream_kind_serve_answers_is_upstreams(tmp_path):
    require_greeting_plugin()
    protocol = upstream_schema("resource-schema-v0.json")
    greeting = {"type": "greeting", "inputProperties": {"directory": str(tmp_path), "name": "Ann"}}
    store = {"type": "greeting_journal", "inputProperties": {"file": str(tmp_path / "state.json")}}
    member = {"type": "greeting", "input_properties": greeting["inputProperties"], "output_properties": {}}
    requests = [
        {"createResourceRequest": {**store, "isStateful": False}},
        {"stateResourceReadRequest": {"resource": store}},
        {"createResourceRequest": {**greeting, "isStateful": True}},
        {"stateResourceEvent": {"resource": store, "event": "create", "nixopsVersion": "0.1.0",
                                "patch": [{"op": "add", "path": "/resources/hello", "value": member}]}},
        {"updateResourceRequest": {"resource": greeting,
                                   "inputProperties": {**greeting["inputProperties"], "greeting": "Hi"}}},
        {"stateResourceReadRequest": {"resource": store}},
        # Failures, as upstream sees them: an unknown type, a bad input, a state request to no store.
        {"createResourceRequest": {"type": "nope", "inputProperties": {}, "isStateful": True}},
        {"createResourceRequest": {"type": "greeting", "inputProperties": {"name": 5}, "isStateful": True}},
        {"stateResourceReadRequest": {"resource": greeting}},
    ]
    for request in requests:
        check_against_upstream(request, protocol, "Request", "sending")
    out, err, status = serve_lines([line(r) for r in requests])
    assert status == 0, err
    answers = [json.loads(o) for o in out]
    assert len(answers) == len(requests)
    for answer in answers:
        check_against_upstream(answer, protocol, "Response", "answering")
    kinds = [next(iter(a)) for a in answers]
    assert kinds == ["createResourceResponse", "stateResourceReadResponse", "createResourceResponse",
                     "stateResourceEventResponse", "updateResourceResponse", "stateResourceReadResponse",
                     "errorResponse", "errorResponse", "errorResponse"]
    assert answers[5]["stateResourceReadResponse"]["state"]["resources"]["hello"] == member


def test_the_extensions_are_marked_and_upstream_has_none_of_them():
    from fediversity_providers.core.resource import load_schema

    ours = load_schema("protocol")["$defs"]
    upstream = upstream_schema("resource-schema-v0.json")["definitions"]
    upstream_kinds = {name[0].lower() + name[1:] for name in upstream}
    for name, definition in ours.items():
        if name in ("request", "response", "resource", "properties", "errorResponse"):
            continue
        assert bool(definition.get("x-extension")) == (name not in upstream_kinds), name
    assert {"readResourceRequest", "deleteResourceRequest", "destroyResourceRequest"} <= {
        n for n, d in ours.items() if d.get("x-extension")}
    text = json.dumps(ours) + open(__file__.replace("tests/test_core_upstream_protocol.py", "README.md")).read()
    assert "newer revisions" not in text.lower()


def test_an_object_patch_is_refused_a_missing_nixops_version_tolerated(tmp_path):
    require_greeting_plugin()
    store = {"type": "greeting_journal", "inputProperties": {"file": str(tmp_path / "state.json")}}
    out, err, _ = serve_lines([
        line({"createResourceRequest": {**store, "isStateful": False}}),
        line({"stateResourceEvent": {"resource": store, "event": "create", "patch": {"op": "add"}}}),
        line({"stateResourceEvent": {"resource": store, "event": "create", "patch": []}}),
    ])
    answers = [json.loads(o) for o in out]
    assert "patch must be an RFC 6902 JSON Patch array" in answers[1]["errorResponse"]["message"]
    assert answers[2] == {"stateResourceEventResponse": {}}
