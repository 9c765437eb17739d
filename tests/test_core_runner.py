"""The runner commands, driving a real provider process over the protocol."""

from __future__ import annotations

import json
import subprocess
import sys

from support import FIXTURES, require_greeting_plugin


def run(*args):
    return subprocess.run([sys.executable, "-m", "fediversity_providers", *args],
                          capture_output=True, text=True, timeout=60)


def test_create_read_update_delete_through_the_runner(tmp_path):
    require_greeting_plugin()
    d = str(tmp_path)
    created = run("create", "--type", "greeting", "--input-str", "directory", d, "--input-str", "name", "Ann",
                  "--input-json", "noisy", "true", "--stateful")
    assert created.returncode == 0, created.stderr
    outputs = json.loads(created.stdout)  # stdout is the outputs and nothing else, noise included
    assert outputs == {"path": f"{d}/greeting.txt", "text": "Hello, Ann!"}
    assert "greeting: writing:" in created.stderr

    inputs = json.dumps({"directory": d, "name": "Ann"})
    read = run("read", "--type", "greeting", "--inputs-json", inputs, "--outputs-json", created.stdout)
    assert json.loads(read.stdout) == outputs

    updated = run("update", "--type", "greeting", "--previous-inputs-json", inputs,
                  "--previous-outputs-json", created.stdout, "--inputs-json", inputs, "--input-str", "greeting", "Hi")
    assert json.loads(updated.stdout)["text"] == "Hi, Ann!"

    deleted = run("delete", "--type", "greeting", "--inputs-json", inputs)
    assert deleted.returncode == 0 and json.loads(deleted.stdout) == {}
    gone = run("read", "--type", "greeting", "--inputs-json", inputs, "--outputs-json", created.stdout)
    assert gone.returncode == 1 and gone.stdout == ""
    assert "greeting: not found:" in gone.stderr


def test_errors_go_to_stderr_with_status_1(tmp_path):
    require_greeting_plugin()
    bad = run("create", "--type", "greeting", "--input-str", "directory", str(tmp_path), "--input-json", "name", "5")
    assert bad.returncode == 1 and bad.stdout == ""
    assert "inputProperties.name: 5 is not of type 'string'" in bad.stderr
    unparsable = run("create", "--type", "greeting", "--inputs-json", "{oops")
    assert unparsable.returncode == 1 and "failed to parse value of --inputs-json" in unparsable.stderr
    unusable = run("create", "--type", "greeting", "--no-such-flag")
    assert unusable.returncode == 2 and "unrecognized arguments" in unusable.stderr


def test_any_nixops4_provider_with_provider_exe():
    foreign = str(FIXTURES / "foreign_provider.py")
    done = run("create", "--provider-exe", sys.executable, "--provider-args-json", json.dumps([foreign]),
               "--type", "memo", "--input-str", "note", "hi")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"echo": {"note": "hi"}}
    refused = run("read", "--provider-exe", sys.executable, "--provider-args-json", json.dumps([foreign]),
                  "--type", "memo", "--outputs-json", "{}")
    assert refused.returncode == 1 and "memo provider: cannot handle readResourceRequest" in refused.stderr
    missing = run("create", "--provider-exe", "/nonexistent/provider", "--type", "memo")
    assert missing.returncode == 1 and "cannot start the provider '/nonexistent/provider'" in missing.stderr


def test_state_read_and_state_event_reach_a_state_store(tmp_path):
    require_greeting_plugin()
    inputs = json.dumps({"file": str(tmp_path / "journal.json")})
    assert run("create", "--type", "greeting_journal", "--inputs-json", inputs).returncode == 0
    patch = [{"op": "add", "path": "/resources/a", "value": {"type": "t", "input_properties": {}, "output_properties": {}}}]
    event = run("state-event", "--type", "greeting_journal", "--inputs-json", inputs, "--outputs-json", "{}",
                "--event", "create", "--nixops-version", "0.1", "--patch-json", json.dumps(patch))
    assert event.returncode == 0 and event.stdout == "State event sent successfully\n"
    state = run("state-read", "--type", "greeting_journal", "--inputs-json", inputs, "--outputs-json", "{}")
    assert json.loads(state.stdout) == {"_type": "nixopsState", "deployments": {},
                                        "resources": {"a": patch[0]["value"]}}
