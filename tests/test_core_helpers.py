"""The core's shared helpers: retry, secret files, untrusted text, heartbeat."""

from __future__ import annotations

import os
import threading
import time

import pytest
from hypothesis import given, strategies as st

from fediversity_providers import Context, InvalidInput, Transient
from fediversity_providers.core.heartbeat import Heartbeat
from fediversity_providers.core.retry import retry
from fediversity_providers.core.secretfile import read_secret_file
from fediversity_providers.core.untrusted import (
    path_component, printable, refuse_control, shell_quote, ssh_config_value)


# --- retry -----------------------------------------------------------------

def _flaky(failures: int, error=Transient):
    calls = []

    def attempt():
        calls.append(time.monotonic())
        if len(calls) <= failures:
            raise error("boom")
        return "done"
    return attempt, calls


def test_retry_repeats_retryable_errors_until_success_and_logs_each_retry():
    attempt, calls = _flaky(3)
    lines = []
    assert retry(attempt, window=5, what="GET /x", log=lines.append, first_delay=0.001) == "done"
    assert len(calls) == 4
    assert len(lines) == 3 and all(line.startswith("GET /x: boom; attempt ") for line in lines)


def test_retry_raises_a_final_error_at_once():
    attempt, calls = _flaky(5, error=InvalidInput)
    with pytest.raises(InvalidInput):
        retry(attempt, window=5, what="x", first_delay=0.001)
    assert len(calls) == 1


def test_retry_gives_up_within_the_window_and_counts_attempts():
    attempt, calls = _flaky(10_000)
    started = time.monotonic()
    with pytest.raises(Transient) as caught:
        retry(attempt, window=0.3, what="x", first_delay=0.02, max_delay=0.05)
    assert time.monotonic() - started < 0.3 + 0.1
    assert len(calls) > 2
    assert f"(after {len(calls)} attempts)" in caught.value.message


def test_retry_respects_the_request_deadline_over_a_longer_window():
    attempt, calls = _flaky(10_000)
    started = time.monotonic()
    with pytest.raises(Transient):
        retry(attempt, window=60, deadline=started + 0.2, what="x", first_delay=0.02, max_delay=0.05)
    assert time.monotonic() - started < 0.2 + 0.1


def test_retry_uses_the_callers_rule():
    attempt, calls = _flaky(2, error=KeyError)
    assert retry(attempt, window=5, what="x", retryable=lambda e: isinstance(e, KeyError),
                 first_delay=0.001) == "done"
    assert len(calls) == 3


# --- secret files ----------------------------------------------------------

def test_secret_file_one_line_with_or_without_newline(tmp_path):
    for content in ("s3cr3t\n", "s3cr3t"):
        path = tmp_path / "token"
        path.write_text(content)
        assert read_secret_file(str(path), field="inputProperties.tokenFile") == "s3cr3t"


@pytest.mark.parametrize("content", ["a\nb\n", "a\r\n", "line\rother", "\n", ""])
def test_secret_file_refuses_several_lines_and_never_shows_them(tmp_path, content):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(InvalidInput) as caught:
        read_secret_file(str(path), field="inputProperties.tokenFile")
    text = str(caught.value)
    assert "inputProperties.tokenFile" in text and str(path) in text and "nothing was changed" in text
    for part in ("a", "b", "other"):
        if part in content:
            assert f"'{part}" not in text


def test_secret_file_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = {}

    def read():
        try:
            read_secret_file(str(fifo), field="f")
        except InvalidInput as error:
            result["error"] = str(error)
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(2)
    assert not thread.is_alive(), "reading a FIFO blocked"
    assert "is not a regular file (a FIFO)" in result["error"]


def test_secret_file_refuses_directories_devices_and_missing_files(tmp_path):
    for path, words in ((str(tmp_path), "a directory"), ("/dev/zero", "a character device"),
                        (str(tmp_path / "nope"), "cannot open")):
        with pytest.raises(InvalidInput, match=words):
            read_secret_file(path, field="f")


def test_secret_file_refuses_a_huge_file_without_reading_it_all(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"x" * (10 * 1024 * 1024))
    with pytest.raises(InvalidInput, match="larger than"):
        read_secret_file(str(path), field="f")


# --- untrusted text --------------------------------------------------------

CONTROL = st.sampled_from(["\n", "\r", "\x00", "\x1b", "\t", "\x7f", "\x85", "\u2028"])


@given(st.text(max_size=20), CONTROL, st.text(max_size=20))
def test_every_writer_refuses_control_characters(before, control, after):
    value = before + control + after
    for writer in (refuse_control, ssh_config_value, shell_quote, path_component):
        with pytest.raises(InvalidInput, match="control character"):
            writer(value, field="inputProperties.ssh.host")


def test_ssh_config_value_quotes_every_value_and_escapes_tokens():
    assert ssh_config_value("host.example", field="f") == '"host.example"'
    assert ssh_config_value("/path with space/key", field="f") == '"/path with space/key"'
    assert ssh_config_value('a"b\\c', field="f") == '"a\\"b\\\\c"'
    assert ssh_config_value("/k/%h", field="f", tokens=True) == '"/k/%%h"'
    with pytest.raises(InvalidInput, match="is empty"):
        ssh_config_value("", field="f")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=30))
def test_shell_quote_round_trips_through_a_posix_shell_split(value):
    import shlex
    if any(c in value for c in "\x85\u2028\u2029"):
        return
    assert shlex.split(shell_quote(value, field="f")) == [value]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/etc"])
def test_path_component_refuses_what_is_not_one_name(name):
    with pytest.raises(InvalidInput, match="not a single file name"):
        path_component(name, field="inputProperties.keys")


def test_printable_escapes_control_characters_and_bounds_length():
    assert printable("bad\nline\x1b[2J\u202e") == "bad\\x0aline\\x1b[2J\\u202e"
    assert printable("x" * 600, limit=10).startswith("x" * 10 + "… (590 more")


# --- heartbeat -------------------------------------------------------------

def test_heartbeat_says_what_how_long_and_the_limit():
    lines = []
    with Heartbeat(lines.append, "task UPID:1", limit=900, interval=0.05):
        time.sleep(0.28)
    assert 3 <= len(lines) <= 6
    assert lines[0].startswith("still waiting for task UPID:1: ") and lines[0].endswith(", limit 900s")


def test_heartbeat_is_silent_for_a_short_wait_and_stops_at_exit():
    lines = []
    with Heartbeat(lines.append, "x", interval=0.2):
        time.sleep(0.01)
    time.sleep(0.3)
    assert lines == []


def test_context_waiting_writes_progress_lines(capfd):
    ctx = Context("greeting")
    with ctx.waiting("nix copy to host", limit=30, interval=0.05):
        time.sleep(0.12)
    err = capfd.readouterr().err
    assert "waiting: still waiting for nix copy to host:" in err and "limit 30s" in err


def test_file_roots_limit_what_an_input_may_name(tmp_path, monkeypatch):
    from fediversity_providers.core.secretfile import FILE_ROOTS_ENV, read_regular_file, read_secret_file

    allowed, outside = tmp_path / "secrets", tmp_path / "elsewhere"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "token").write_text("t0ken\n")
    (outside / "shadow").write_text("root:x\n")
    (allowed / "sneaky").symlink_to(outside / "shadow")
    assert read_secret_file(str(outside / "shadow"), field="f") == "root:x", "unset: every file may be read"
    monkeypatch.setenv(FILE_ROOTS_ENV, f"{allowed}:{tmp_path / 'absent'}")
    assert read_secret_file(str(allowed / "token"), field="adminTokenFile") == "t0ken"
    for path in (outside / "shadow", allowed / "sneaky", allowed / ".." / "elsewhere" / "shadow", "/etc/hostname"):
        with pytest.raises(InvalidInput) as caught:
            read_regular_file(str(path), field="keys.k.keyFile", limit=100)
        assert FILE_ROOTS_ENV in str(caught.value) and "keys.k.keyFile" in str(caught.value)
        assert "root:x" not in str(caught.value)
