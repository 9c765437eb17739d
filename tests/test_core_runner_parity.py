"""The runner against upstream's: same flags, same messages, and it drives an upstream-style provider.

``tests/reference/nixops4/runner-flags.json`` is upstream's flag list; the
provider in ``tests/fixtures/upstream_like_provider.py`` refuses (by exiting
without an answer) any line that is not upstream's ``Request``, so every
request the runner sends is checked against upstream's own schema.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support import FIXTURES, REFERENCE

from fediversity_providers.core.cli import build_parser

FLAGS = json.loads((REFERENCE / "nixops4" / "runner-flags.json").read_text())
UPSTREAM_LIKE = str(FIXTURES / "upstream_like_provider.py")

#: Where we are more lenient than upstream, and the default the README documents.
LENIENT = {
    "--provider-exe": "this suite's own serve",
    "--inputs-json": "{} and the -j/-s inputs",
    "--nixops-version": "fediversity-providers and its version",
}


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fediversity_providers", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def upstream(*args, env=None):
    return run(*args[:1], "--provider-exe", sys.executable, "--provider-args-json", json.dumps([UPSTREAM_LIKE]),
               *args[1:], env=env)


def subcommand_actions(name):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {flag: action for action in sub.choices[name]._actions for flag in action.option_strings}


@pytest.mark.parametrize("command", sorted(FLAGS["commands"]))
def test_every_upstream_flag_exists_with_its_short_form_and_required_ness(command):
    ours = subcommand_actions(command)
    for flag in FLAGS["commands"][command]:
        action = ours.get(flag["long"])
        assert action is not None, f"{command} lacks {flag['long']}"
        if "short" in flag:
            assert ours.get(flag["short"]) is action, f"{command} lacks {flag['short']}"
        values = 0 if action.nargs == 0 else (action.nargs if isinstance(action.nargs, int) else 1)
        assert values == flag["values"], (command, flag)
        if flag["required"] and not action.required:
            assert flag["long"] in LENIENT, f"{command} {flag['long']}: upstream requires it"
            assert action.help and "default" in action.help, f"{flag['long']}: the default is not documented"


def test_our_additions_are_marked_as_ours_in_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("read", "delete"):
        assert "this project's addition" in sub.choices[name].description
    for name in ("create", "read"):
        help_text = sub.choices[name].format_help()
        assert "--provider-args-json" in help_text and help_text.count("this project's addition") >= 2


def test_a_duplicate_input_is_an_error_as_upstream():
    for args in (["-s", "note", "a", "-s", "note", "b"], ["-j", "note", '"a"', "-s", "note", "b"],
                 ["--inputs-json", '{"note": 1}', "--input-str", "note", "b"]):
        done = upstream("create", "--type", "memo", *args)
        assert done.returncode == FLAGS["_messages"]["failure_exit_status"] and done.stdout == ""
        assert FLAGS["_messages"]["duplicate_input"].replace("NAME", "note") in done.stderr


def test_every_upstream_command_drives_an_upstream_style_provider(tmp_path):
    log = tmp_path / "requests.jsonl"
    env = {**__import__("os").environ, "UPSTREAM_LIKE_LOG": str(log)}
    created = upstream("create", "--type", "memo", "-s", "note", "hi", "-j", "n", "2", "--stateful", env=env)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout) == {"echo": {"note": "hi", "n": 2}}
    updated = upstream("update", "--type", "memo", "--inputs-json", '{"note": "ho"}',
                       "--previous-inputs-json", '{"note": "hi"}', "--previous-outputs-json", created.stdout, env=env)
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout) == {"echo": {"note": "ho"}}

    store = json.dumps({"file": str(tmp_path / "state.json")})
    assert upstream("create", "--type", "journal", "--inputs-json", store, env=env).returncode == 0
    patch = [{"op": "add", "path": "/resources/web", "value": {"type": "memo", "inputProperties": {}}}]
    event = upstream("state-event", "--type", "journal", "--inputs-json", store, "--outputs-json", "{}",
                     "--event", "create", "--patch-json", json.dumps(patch), env=env)
    assert event.returncode == 0, event.stderr
    assert event.stdout == FLAGS["_messages"]["state_event_success"] + "\n"
    state = upstream("state-read", "--type", "journal", "--inputs-json", store, "--outputs-json", "{}", env=env)
    assert state.returncode == 0, state.stderr
    assert json.loads(state.stdout)["resources"] == {"web": patch[0]["value"]}

    sent = [json.loads(line) for line in log.read_text().splitlines()]
    assert [next(iter(r)) for r in sent] == ["createResourceRequest", "updateResourceRequest",
                                              "createResourceRequest", "stateResourceEvent",
                                              "stateResourceReadRequest"]
    assert sent[3]["stateResourceEvent"]["nixopsVersion"].startswith("fediversity-providers ")
    assert sent[0]["createResourceRequest"]["isStateful"] is True


def test_our_own_requests_are_refused_by_an_upstream_provider_with_a_clear_error():
    done = upstream("read", "--type", "memo", "--outputs-json", "{}")
    assert done.returncode == 1 and done.stdout == ""
    assert "exited with status 1 without answering" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("answer, says", [
    ("print('not json')", "cannot read"),
    ("print('{\"createResourceResponse\": {\"outputProperties\": {\"x\": NaN}}}')", "NaN"),
    ("print('[' * 100000 + ']' * 100000)", "nests"),
    ("print('{\"createResourceResponse\": 5}')", ""),
    ("import sys; sys.exit(3)", "exited with status 3 without answering"),
])
def test_a_provider_that_answers_nonsense_gets_an_error_not_a_traceback(tmp_path, answer, says):
    script = tmp_path / "provider.py"
    script.write_text(f"import sys\nsys.stdin.readline()\n{answer}\n")
    done = run("create", "--provider-exe", sys.executable, "--provider-args-json", json.dumps([str(script)]),
               "--type", "memo")
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" not in done.stderr and says in done.stderr
    assert done.stderr.startswith("fediversity-provider create: ")


def test_a_provider_that_never_answers_is_stopped_at_the_timeout(tmp_path):
    script = tmp_path / "silent.py"
    script.write_text("import time\ntime.sleep(600)\n")
    done = run("create", "--provider-exe", sys.executable, "--provider-args-json", json.dumps([str(script)]),
               "--type", "memo", "--timeout", "1")
    assert done.returncode == 1
    assert "did not answer within 1s and was stopped" in done.stderr and "Traceback" not in done.stderr


def test_a_reader_that_goes_away_is_no_traceback():
    # `fediversity-provider schema … | head -1`
    pipeline = subprocess.run(f"{sys.executable} -m fediversity_providers schema proxmox_vm | head -c 10",
                              shell=True, capture_output=True, text=True, timeout=60)
    assert len(pipeline.stdout) == 10
    assert "Traceback" not in pipeline.stderr and "BrokenPipe" not in pipeline.stderr


def test_version_help_and_usage_errors():
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("fediversity-provider ")
    for command in ("serve", "create", "read", "update", "delete", "state-read", "state-event", "types",
                    "schema", "plugins", "nix-module"):
        shown = run(command, "--help")
        assert shown.returncode == 0, command
        assert "usage:" in shown.stdout
        for line in shown.stdout.splitlines():
            stripped = line.strip()
            if stripped.startswith("--") and "  " not in stripped and line.startswith("  --"):
                # a flag line without help text on the same line must have it on the next one
                following = shown.stdout.splitlines()[shown.stdout.splitlines().index(line) + 1]
                assert following.startswith(" " * 10), f"{command}: {stripped} has no help"
    top = run("--help").stdout
    assert "FEDIVERSITY_PROVIDERS_TIMEOUT" in top and "exit status" in top
    typo = run("craete", "--type", "x")
    assert typo.returncode == FLAGS["_messages"]["usage_exit_status"]
    assert "did you mean 'create'?" in typo.stderr
    flag = run("create", "--type", "x", "--statefull")
    assert flag.returncode == 2 and "did you mean '--stateful'?" in flag.stderr
    missing = run("read", "--type", "proxmox_vm")
    assert missing.returncode == 2 and "--outputs-json" in missing.stderr
    bad_json = run("create", "--type", "memo", "--inputs-json", "{oops")
    assert bad_json.returncode == 1 and "failed to parse value of --inputs-json" in bad_json.stderr


def test_a_mistyped_type_gets_a_suggestion():
    done = run("create", "--type", "proxmox_mv", "--stateful")
    assert done.returncode == 1 and "did you mean 'proxmox_vm'?" in done.stderr


def test_input_errors_are_reported_with_a_missing_stateful():
    done = run("create", "--type", "proxmox_vm", "-j", "cores", "0")
    assert done.returncode == 1
    assert "inputProperties.cores" in done.stderr and "isStateful" in done.stderr and "--stateful" in done.stderr


def test_a_plugin_selection_naming_nothing_installed_warns():
    env = {**__import__("os").environ, "FEDIVERSITY_PROVIDERS_PLUGINS": "greeting-plugn"}
    done = run("types", env=env)
    assert done.returncode == 0
    assert "FEDIVERSITY_PROVIDERS_PLUGINS names 'greeting-plugn'" in done.stderr


@pytest.mark.parametrize("value", ["inf", "1e300", "nan", "-1", "0"])
def test_a_timeout_that_is_no_number_of_seconds_is_refused(value, tmp_path):
    done = run("create", "--type", "proxmox_vm", "--timeout", value)
    assert done.returncode == 1 and "--timeout must be a number of seconds" in done.stderr
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr
    env = {**__import__("os").environ, "FEDIVERSITY_PROVIDERS_TIMEOUT": value}
    stub = {"name": "web1", "template": "debian-12-cloud", "stub": {"stateDir": str(tmp_path)}}
    served = run("create", "--type", "proxmox_vm", "--stateful", "--inputs-json", json.dumps(stub), env=env)
    assert served.returncode == 1 and "FEDIVERSITY_PROVIDERS_TIMEOUT" in served.stderr
    assert "internal error" not in served.stderr and "Traceback" not in served.stderr


@pytest.mark.parametrize("script, says, prints", [
    # a grandchild keeps the provider's stdout open
    ("sleep 30; true", "did not answer within 1s and was stopped", False),
    # it answers nonsense, then does not exit
    ("echo NaN; sleep 30", "cannot read", False),
    # it answers, then does not exit: the answer stands, the exit is reported
    ('echo \'{"createResourceResponse":{"outputProperties":{"a":1}}}\'; exec sleep 30',
     "did not exit within 1s after its answer", True),
])
def test_the_timeout_covers_the_providers_children_and_its_exit(script, says, prints):
    import time

    started = time.monotonic()
    done = run("create", "--type", "x", "--provider-exe", "sh", "--provider-args-json", json.dumps(["-c", script]),
               "--timeout", "1")
    assert time.monotonic() - started < 10
    assert done.returncode == 1 and says in done.stderr and "Traceback" not in done.stderr
    assert (json.loads(done.stdout) == {"a": 1}) if prints else done.stdout == ""


def test_json_flags_read_from_a_file_or_stdin_so_no_secret_is_on_the_command_line(tmp_path):
    spec = {"note": "S3CRET-never-in-argv"}
    (tmp_path / "inputs.json").write_text(json.dumps(spec))
    from_file = upstream("create", "--type", "memo", "--inputs-json", f"@{tmp_path / 'inputs.json'}")
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout) == {"echo": spec}
    from_stdin = subprocess.run([sys.executable, "-m", "fediversity_providers", "create", "--provider-exe",
                                 sys.executable, "--provider-args-json", json.dumps([UPSTREAM_LIKE]), "--type", "memo",
                                 "--inputs-json", "@-"], input=json.dumps(spec), capture_output=True, text=True,
                                timeout=60)
    assert json.loads(from_stdin.stdout) == {"echo": spec}
    missing = run("create", "--type", "memo", "--inputs-json", f"@{tmp_path / 'absent.json'}")
    assert missing.returncode == 1 and "cannot read the value of --inputs-json" in missing.stderr


def test_flags_are_spelled_out_and_a_mistyped_required_flag_is_named():
    abbreviated = run("create", "--typ", "proxmox_vm")
    assert abbreviated.returncode == 2, "no abbreviations, as nixops4-resource-runner"
    typo = run("create", "--tpye", "proxmox_vm")
    assert typo.returncode == 2 and "did you mean '--type' for '--tpye'?" in typo.stderr
    word = run("create", "--type", "x", "--timeout", "abc")
    assert word.returncode == 1 and "--timeout must be a number of seconds" in word.stderr
    for command in ("types", "schema", "plugins", "nix-module"):
        assert "FEDIVERSITY_PROVIDERS_PLUGINS" in run(command, "--help").stdout


def test_a_type_hidden_by_the_plugin_selection_says_so(tmp_path):
    env = {**__import__("os").environ, "FEDIVERSITY_PROVIDERS_PLUGINS": "nothing-here"}
    done = run("create", "--type", "greeting", env=env)
    assert done.returncode == 1 and "FEDIVERSITY_PROVIDERS_PLUGINS='nothing-here' loads only" in done.stderr
