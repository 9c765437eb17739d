"""The loop answers every line, whatever it holds, then goes on (issue: hostile inputs).

Real ``serve`` processes on real pipes; hypothesis makes the strings.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from fediversity_providers.core import server, wire
from fediversity_providers.core.engine import Engine
from fediversity_providers.core.plugins import Registry

from support import FIXTURES, SERVE, assert_protocol_message, require_greeting_plugin, serve_lines

HOSTILE = [sys.executable, str(FIXTURES / "hostile_provider.py")]


def create(directory, name="World", **extra) -> bytes:
    inputs = {"directory": str(directory), "name": name, **extra}
    return (json.dumps({"createResourceRequest": {"type": "greeting", "inputProperties": inputs,
                                                  "isStateful": True}}) + "\n").encode()


def answers(out: list[bytes]) -> list[dict]:
    """Each line must be strict JSON, as NixOps4's parser reads it: UTF-8, no NaN, no lone surrogate."""
    parsed = []
    for raw in out:
        text = raw.decode("utf-8")  # strict: raises on anything that is not UTF-8
        value = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} on the wire"))
        assert_protocol_message(value)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # no lone surrogate after parsing either
        parsed.append(value)
    return parsed


def message(answer: dict) -> str:
    return answer["errorResponse"]["message"]


@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")])
def test_json_nested_100000_deep_is_refused_and_the_loop_goes_on(tmp_path, opener, closer):
    require_greeting_plugin()
    deep = (opener * 100_000 + "1" + closer * 100_000 + "\n").encode()
    out, err, status = serve_lines([deep, create(tmp_path)])
    assert status == 0 and b"Traceback" not in err
    first, second = answers(out)
    assert f"nests arrays or objects more than {wire.MAX_DEPTH} deep" in message(first)
    assert "createResourceResponse" in second


def test_nesting_just_past_the_limit_inside_inputs_is_refused_before_any_schema_sees_it(tmp_path):
    require_greeting_plugin()
    nested = 1
    for _ in range(wire.MAX_DEPTH):
        nested = [nested]
    out, _, status = serve_lines([create(tmp_path, name=nested), create(tmp_path)])
    first, second = answers(out)
    assert "more than 64 deep" in message(first) and "createResourceResponse" in second


@pytest.mark.parametrize("literal,expected", [
    ("1e400", "1e400 is too large for a double"),
    ("-1e400", "too large for a double"),
    ("NaN", "NaN is not a JSON value"),
    ("Infinity", "Infinity is not a JSON value"),
    ("-Infinity", "-Infinity is not a JSON value"),
])
def test_numbers_json_has_not_are_refused(tmp_path, literal, expected):
    require_greeting_plugin()
    line = create(tmp_path).replace(b'"World"', literal.encode())
    out, _, status = serve_lines([line, create(tmp_path)])
    first, second = answers(out)
    assert status == 0
    assert expected in message(first) and "createResourceResponse" in second


surrogates = st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04x}")
texts = st.lists(st.one_of(st.characters(codec="utf-8"), surrogates), min_size=1, max_size=12).map("".join)


@settings(max_examples=40, deadline=None)
@given(name=texts)
def test_lone_surrogates_anywhere_in_a_request_get_a_valid_utf8_answer(tmp_path_factory, name):
    """Escaped into the JSON text: the form NixOps4 could send, and Python decodes to lone surrogates."""
    directory = tmp_path_factory.mktemp("s")
    raw = create(directory, name="PLACEHOLDER").replace(b"PLACEHOLDER", json.dumps(name)[1:-1].encode("utf-8"))
    raw = raw.replace(b"\\\\u", b"\\u")  # json.dumps escaped our backslash: undo, so the escape is real
    out, err, status = serve_lines([raw, create(directory, name="Ann")])
    assert status == 0, err
    first, second = answers(out)
    assert "createResourceResponse" in second


def test_a_lone_surrogate_is_named_in_the_error_without_breaking_the_line(tmp_path):
    require_greeting_plugin()
    out, _, _ = serve_lines([create(tmp_path).replace(b'"World"', b'"\\udcff"')])
    (first,) = answers(out)
    assert "lone surrogate" in message(first)


control = st.characters(min_codepoint=0, max_codepoint=0x9F).filter(lambda c: not c.isprintable())


@settings(max_examples=40, deadline=None)
@given(name=st.tuples(control, st.lists(st.one_of(control, st.sampled_from("a\u202e\u2028\u2066")), max_size=10))
       .map(lambda t: "".join(t[1][:1]) + t[0] + "".join(t[1][1:])))
def test_control_characters_echoed_in_an_error_are_escaped(tmp_path_factory, name):
    directory = tmp_path_factory.mktemp("c")
    out, err, status = serve_lines([create(directory, name=name), create(directory, name="Ann")])
    assert status == 0, err
    first, second = answers(out)
    text = message(first)
    assert "invalid input: inputProperties.name" in text
    assert all(c.isprintable() for c in text), repr(text)  # nothing a terminal would act on
    assert "createResourceResponse" in second


def test_raw_control_characters_in_the_json_text_are_refused(tmp_path):
    require_greeting_plugin()
    out, _, _ = serve_lines([create(tmp_path).replace(b"World", b"Wo\x1b[2Jrld"), create(tmp_path)])
    first, second = answers(out)
    assert "not JSON: Invalid control character" in message(first)
    assert "createResourceResponse" in second


def test_a_line_longer_than_the_limit_is_refused_without_being_held_in_memory(tmp_path):
    require_greeting_plugin()
    env = dict(os.environ, **{server.MAX_LINE_ENV: str(1024 * 1024)})
    huge = b'{"createResourceRequest": {"type": "greeting", "inputProperties": {"x": "' + b"a" * (96 << 20) + b'"}}}\n'
    process = subprocess.Popen(SERVE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def feed():
        process.stdin.write(huge)
        process.stdin.write(create(tmp_path))
        process.stdin.flush()

    writer = threading.Thread(target=feed)
    writer.start()
    out = [process.stdout.readline(), process.stdout.readline()]
    writer.join()
    # The high-water mark of the provider's own memory, read while it still runs
    # (ru_maxrss would count the forking test process too).
    status_text = Path(f"/proc/{process.pid}/status").read_text()
    peak_kib = int(next(line for line in status_text.splitlines() if line.startswith("VmHWM:")).split()[1])
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    first, second = answers(out)
    assert f"longer than {1024 * 1024} bytes, so it was skipped without being read" in message(first)
    assert server.MAX_LINE_ENV in message(first)
    assert "createResourceResponse" in second
    assert peak_kib * 1024 < 64 << 20, f"the provider grew to {peak_kib} KiB for a 96 MiB line"


def test_the_line_reader_asks_for_bounded_chunks_only():
    class Recording(io.BytesIO):
        sizes: list[int] = []

        def readline(self, size=-1):
            self.sizes.append(size)
            return super().readline(size)

    stream = Recording(b"x" * 1_000_000 + b"\nok\n")
    assert server._read_line(stream, 1000) is None
    assert server._read_line(stream, 1000) == b"ok\n"
    assert all(0 < size <= 64 * 1024 for size in stream.sizes)


def test_the_default_line_limit_is_documented():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert server.MAX_LINE_ENV in readme and "16 MiB" in readme
    assert server.DEFAULT_MAX_LINE == 16 * 1024 * 1024


@pytest.mark.parametrize("value,problem", [
    ("nan", "outputProperties.value: NaN is not a JSON number"),
    ("inf", "outputProperties.value: inf is not a JSON number"),
    ("surrogate", "outputProperties.value: '\\udcff' holds a lone surrogate"),
    ("deep", "nested more than 64 deep"),
])
def test_outputs_json_cannot_carry_are_a_plugin_error_never_written_and_logged(value, problem):
    request = {"createResourceRequest": {"type": "nan", "inputProperties": {"value": value}, "isStateful": True}}
    done = subprocess.run(HOSTILE, input=(json.dumps(request) + "\n").encode() * 2, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines(keepends=True)
    assert len(out) == 2
    for answer in answers(out):
        text = message(answer)
        assert text.startswith("nan: plugin error: the plugin returned a value that cannot be written as JSON")
        assert problem in text
    # what the create made is on stderr, so that the operator can find it
    assert b"could not be sent" in done.stderr and b"vm-4711" in done.stderr
    assert b"Traceback" not in done.stderr


def test_a_provider_whose_reader_is_gone_exits_quietly_and_logs_what_its_create_made(tmp_path):
    require_greeting_plugin()
    process = subprocess.Popen(SERVE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # NixOps4 went away
    _, err = process.communicate(create(tmp_path, name="Ann"), timeout=60)
    assert b"Traceback" not in err and b"Exception ignored" not in err
    assert b"the protocol reader is gone" in err
    assert b"createResourceResponse could not be sent" in err
    assert str(tmp_path / "greeting.txt").encode() in err  # what was made, so it can be found
    assert process.returncode == 1


def test_a_bug_in_the_core_is_still_one_answer_per_line(tmp_path):
    class Exploding(Engine):
        def handle(self, kind, body):
            raise RecursionError("maximum recursion depth exceeded")

    out = io.BytesIO()
    status = server.serve(Exploding(Registry([], entry_points=False)),
                          protocol_in=io.BytesIO(b"{}\n" + b'{"readResourceRequest": {"resource": '
                                                 b'{"type": "x", "inputProperties": {}}}}\n'),
                          protocol_out=out)
    assert status == 0
    first, second = answers(out.getvalue().splitlines(keepends=True))
    assert "exactly one key" in message(first)
    assert "internal error in fediversity-providers' core: RecursionError" in message(second)


def test_log_lines_escape_control_characters_but_keep_a_tracebacks_lines(capsys):
    from fediversity_providers.core import logs

    logs.emit("greeting", "host said \x1b[2J\x9b\u202eevil\r\nnext line\tindented")
    err = capsys.readouterr().err
    assert err == "greeting: host said \\x1b[2J\\x9b\\u202eevil\\x0d\nnext line\tindented\n"


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.sampled_from(["[", "{"]), min_size=1, max_size=3000))
def test_any_nesting_is_parsed_or_refused_by_depth_never_crashes(shape):
    from fediversity_providers.core.errors import ProtocolError

    text = "".join('{"k":' if c == "{" else "[" for c in shape) + "0" + "".join(
        "}" if c == "{" else "]" for c in reversed(shape))
    if len(shape) <= wire.MAX_DEPTH:
        assert wire.parse_line(text) is not None
        assert wire.unwritable(wire.parse_line(text), "x") is None
    else:
        with pytest.raises(ProtocolError, match="more than 64 deep"):
            wire.parse_line(text)
