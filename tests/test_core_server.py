"""The stdio server as NixOps4 sees it: a real process, real pipes."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from support import SERVE, assert_protocol_message, require_greeting_plugin, serve_lines


def create(directory, name="World", **extra):
    inputs = {"directory": str(directory), "name": name, **extra}
    return {"createResourceRequest": {"type": "greeting", "inputProperties": inputs, "isStateful": True}}


def line(value) -> bytes:
    return (json.dumps(value) + "\n").encode()


def test_several_requests_one_process_answered_in_order_then_exit_0_on_eof(tmp_path):
    require_greeting_plugin()
    requests = [create(tmp_path, "Ann"), {"readResourceRequest": {"resource": {
        "type": "greeting", "inputProperties": {"directory": str(tmp_path), "name": "Ann"}}}},
        {"deleteResourceRequest": {"resource": {"type": "greeting", "inputProperties": {
            "directory": str(tmp_path), "name": "Ann"}}}}]
    out, _err, status = serve_lines([line(r) for r in requests])
    assert status == 0
    answers = [json.loads(o) for o in out]
    assert [next(iter(a)) for a in answers] == ["createResourceResponse", "readResourceResponse", "deleteResourceResponse"]
    assert answers[0]["createResourceResponse"]["outputProperties"]["text"] == "Hello, Ann!"
    assert answers[1]["readResourceResponse"]["outputProperties"] == answers[0]["createResourceResponse"]["outputProperties"]
    for answer, raw in zip(answers, out):
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1  # one line, no pretty-printing
        assert_protocol_message(answer)
    assert not (tmp_path / "greeting.txt").exists()


BAD_LINES = {
    "not utf-8": (b"\xff\xfe{}\n", "not UTF-8"),
    "not json": (b"{nope\n", "not JSON"),
    "empty line": (b"\n", "not JSON"),
    "array": (b"[1, 2]\n", "exactly one key"),
    "two keys": (b'{"a": {}, "b": {}}\n', "exactly one key"),
    "unknown kind": (b'{"frobnicateRequest": {}}\n', "unknown message kind 'frobnicateRequest'"),
    "extra field": (b'{"createResourceRequest": {"type": "greeting", "inputProperties": {}, "isStateful": true, "x": 1}}\n',
                    "extra fields found (x)"),
    "mistyped field": (b'{"createResourceRequest": {"type": "greeting", "inputProperties": {}, "isStateful": "yes"}}\n',
                       "createResourceRequest.isStateful"),
    "missing field": (b'{"createResourceRequest": {"type": "greeting", "inputProperties": {}}}\n',
                      "createResourceRequest.isStateful: required field missing"),
    "unknown type": (b'{"createResourceRequest": {"type": "nope", "inputProperties": {}, "isStateful": true}}\n',
                     "unknown resource type 'nope'; this provider knows: "),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_bad_line_gets_an_error_response_and_the_loop_goes_on(case, tmp_path):
    require_greeting_plugin()
    bad, expected = BAD_LINES[case]
    out, err, status = serve_lines([bad, line(create(tmp_path))])
    assert status == 0, err
    assert len(out) == 2
    error = json.loads(out[0])
    assert_protocol_message(error)
    assert expected in error["errorResponse"]["message"]
    assert "createResourceResponse" in json.loads(out[1])


def test_input_errors_name_every_field_with_its_path(tmp_path):
    require_greeting_plugin()
    out, _, _ = serve_lines([line(create(tmp_path, name="x y", colour="red", greeting=5))])
    message = json.loads(out[0])["errorResponse"]["message"]
    assert message.startswith("greeting: invalid input: ")
    assert "inputProperties.colour: unknown field" in message
    assert "inputProperties.greeting: 5 is not of type 'string'" in message
    assert "inputProperties.name: 'x y' does not match" in message
    out, _, _ = serve_lines([line({"createResourceRequest": {"type": "greeting", "inputProperties": {}, "isStateful": True}})])
    message = json.loads(out[0])["errorResponse"]["message"]
    assert "inputProperties.directory: required field is missing" in message
    assert "inputProperties.name: required field is missing" in message


def test_plugin_output_on_stdout_never_reaches_the_protocol_stream(tmp_path):
    require_greeting_plugin()
    out, err, status = serve_lines([line(create(tmp_path, noisy=True)), line(create(tmp_path, noisy=True))])
    assert status == 0
    assert len(out) == 2 and all("createResourceResponse" in json.loads(o) for o in out)
    assert b"a plugin printing to stdout" in err
    assert b"a plugin writing to fd 1" in err
    assert b"a child process writing to stdout" in err
    # logging, first imported by the plugin, is configured at once: our format, secrets masked
    assert b"greeting.lib: warning: a library logging the secret <redacted>" in err
    assert b"greeting-canary" not in err


def test_plugin_bug_is_an_error_response_with_traceback_only_in_debug(tmp_path):
    require_greeting_plugin()
    missing = tmp_path / "no" / "such" / "dir"
    out, err, _ = serve_lines([line(create(missing))])
    message = json.loads(out[0])["errorResponse"]["message"]
    assert "internal error while creating" in message and "FileNotFoundError" in message
    assert "a bug in plugin greeting (greeting-plugin)" in message
    assert b"Traceback" not in err
    out, err, _ = serve_lines([line(create(missing))], args=["--debug"])
    assert b"Traceback" in err and b"Traceback" not in b"".join(out)


def test_update_refuses_a_replace_on_change_input(tmp_path):
    require_greeting_plugin()
    previous = {"type": "greeting", "inputProperties": {"directory": str(tmp_path), "name": "A"}}
    request = {"updateResourceRequest": {"resource": previous,
                                         "inputProperties": {"directory": "/elsewhere", "name": "A"}}}
    out, _, _ = serve_lines([line(request)])
    message = json.loads(out[0])["errorResponse"]["message"]
    assert message.startswith("greeting: needs replacement: inputProperties.directory:")


def test_state_requests_to_a_type_that_is_no_state_store_are_refused(tmp_path):
    require_greeting_plugin()
    resource = {"type": "greeting", "inputProperties": {"directory": str(tmp_path), "name": "A"}}
    out, _, status = serve_lines([
        line({"stateResourceReadRequest": {"resource": resource}}),
        line({"stateResourceEvent": {"resource": resource, "event": "x", "nixopsVersion": "4", "patch": []}}),
    ])
    assert status == 0
    for o in out:
        assert "is not a state store" in json.loads(o)["errorResponse"]["message"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\n"), min_size=1, max_size=8))
def test_garbage_gets_exactly_one_response_line_per_input_line(garbage):
    out, err, status = serve_lines(garbage)
    assert status == 0, err
    assert len(out) == len(garbage)
    for raw in out:
        value = json.loads(raw)
        assert_protocol_message(value)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_between_requests_ends_the_process_cleanly(sig):
    process = subprocess.Popen(SERVE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdin.write(b"{}\n")
    process.stdin.flush()
    assert "errorResponse" in json.loads(process.stdout.readline())
    process.send_signal(sig)
    assert process.wait(timeout=10) == 0
    assert process.stdout.read() == b""
    assert b"Traceback" not in process.stderr.read()
    process.stdin.close()


def test_fd_hygiene_happens_before_plugins_load(tmp_path):
    """A plugin that prints at import time must not corrupt the stream either."""
    require_greeting_plugin()
    env = dict(os.environ, GREETING_PLUGIN_IMPORT_NOISE="1")
    out, err, status = serve_lines([line(create(tmp_path))], env=env)
    assert status == 0 and len(out) == 1
    assert "createResourceResponse" in json.loads(out[0])
    assert b"while it is imported" in err


def test_destroy_extension_and_lenient_state_events_without_nixops_version(tmp_path):
    """destroyResourceRequest (upstream's unmerged branch) is delete; a missing nixopsVersion is tolerated (ours)."""
    require_greeting_plugin()
    resource = {"type": "greeting", "inputProperties": {"directory": str(tmp_path), "name": "A"}}
    journal = {"type": "greeting_journal", "inputProperties": {"file": str(tmp_path / "journal.json")}}
    out, err, status = serve_lines([
        line(create(tmp_path, "A")),
        line({"destroyResourceRequest": {"resource": resource}}),
        line({"createResourceRequest": {"type": "greeting_journal", "inputProperties": journal["inputProperties"],
                                        "isStateful": True}}),
        line({"stateResourceEvent": {"resource": journal, "event": "create",
                                     "patch": [{"op": "add", "path": "/resources/a", "value": {}}]}}),
        line({"stateResourceReadRequest": {"resource": journal}}),
    ])
    assert status == 0, err
    answers = [json.loads(o) for o in out]
    for answer in answers:
        assert_protocol_message(answer)
    assert answers[1] == {"destroyResourceResponse": {}}
    assert not (tmp_path / "greeting.txt").exists()
    assert answers[3] == {"stateResourceEventResponse": {}}
    state = answers[4]["stateResourceReadResponse"]["state"]
    assert state == {"_type": "nixopsState", "resources": {"a": {}}, "deployments": {}}


def test_a_bad_timeout_setting_is_named_not_blamed_on_a_plugin(tmp_path):
    require_greeting_plugin()
    env = dict(os.environ, FEDIVERSITY_PROVIDERS_TIMEOUT="ten minutes")
    out, _, status = serve_lines([line(create(tmp_path))], env=env)
    message = json.loads(out[0])["errorResponse"]["message"]
    assert status == 0
    assert "FEDIVERSITY_PROVIDERS_TIMEOUT='ten minutes' is not a positive number of seconds" in message
    assert "bug in plugin" not in message
    assert not (tmp_path / "greeting.txt").exists()
