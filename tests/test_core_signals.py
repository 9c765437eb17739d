"""SIGTERM and SIGINT during a request, sent to a real provider process.

The plugin under test (tests/fixtures/hostile_provider.py) catches every
``Exception`` in its work loop, as careless code does: the signal must still
end the request, its ``finally`` clean-up must run, and a plugin that
swallows even ``BaseException`` is cut off after the documented grace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fediversity_providers.core import server
from fediversity_providers.core.interrupt import Interrupted

from support import FIXTURES, assert_protocol_message

HOSTILE = [sys.executable, str(FIXTURES / "hostile_provider.py")]
ROOT = Path(__file__).resolve().parent.parent


def start(tmp_path, *, swallow_all=False, env=None):
    process = subprocess.Popen(HOSTILE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env)
    request = {"createResourceRequest": {"type": "stubborn", "isStateful": True,
                                         "inputProperties": {"directory": str(tmp_path), "swallowAll": swallow_all}}}
    process.stdin.write((json.dumps(request) + "\n").encode())
    process.stdin.flush()
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        time.sleep(0.02)
    return process


def finish(process):
    answer = process.stdout.readline()
    status = process.wait(timeout=30)
    err = process.stderr.read()
    process.stdin.close()
    return json.loads(answer), status, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_request_is_answered_interrupted_despite_except_exception(tmp_path, sig):
    process = start(tmp_path)
    process.send_signal(sig)
    answer, status, err = finish(process)
    assert_protocol_message(answer)
    assert answer["errorResponse"]["message"].startswith(f"provider: interrupted by {sig.name} before the request")
    assert status == 1  # as the README states: a request was cut short
    assert (tmp_path / "cleaned").exists()  # the plugin's finally ran
    assert b"Traceback" not in err


def test_clean_up_after_a_signal_is_bounded_even_if_the_plugin_swallows_everything(tmp_path):
    env = dict(os.environ, **{server.CLEANUP_ENV: "1"})
    process = start(tmp_path, swallow_all=True, env=env)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    answer, status, err = finish(process)
    elapsed = time.monotonic() - sent
    assert "interrupted by SIGTERM" in answer["errorResponse"]["message"]
    assert status == 1
    assert elapsed < 1 + 3, f"the provider took {elapsed:.1f} s to give up"
    assert b"clean-up after SIGTERM not finished after 1 s; exiting now" in err


def test_a_second_signal_ends_the_clean_up_at_once(tmp_path):
    process = start(tmp_path, swallow_all=True)  # default grace: 10 s
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    answer, status, _ = finish(process)
    assert time.monotonic() - sent < 3
    assert "interrupted by SIGINT" in answer["errorResponse"]["message"] and status == 1


def test_the_interruption_is_no_exception_a_plugin_catches_by_accident():
    assert not issubclass(Interrupted, Exception) and issubclass(Interrupted, BaseException)


def test_readme_and_changelog_state_the_same_exit_statuses():
    readme = (ROOT / "README.md").read_text()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    rule = "status 1 when one was not"
    assert rule in readme and rule in changelog
    assert "SIGINT end it with\n  status 0" not in changelog


def test_the_plugin_region_marks_a_method_interruptible_and_refuses_to_start_one_after_a_stop():
    from fediversity_providers.core import interrupt

    region = interrupt._PluginRegion()
    with region:
        assert interrupt.plugin_running()
    assert not interrupt.plugin_running()
    with pytest.raises(ValueError), region:  # an exception leaves the region too
        raise ValueError
    assert not interrupt.plugin_running()
    region.stop = "SIGTERM"
    with pytest.raises(Interrupted, match="SIGTERM"), region:
        pytest.fail("a plugin method started after the stop")
    assert not interrupt.plugin_running()
