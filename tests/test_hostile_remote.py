"""garage_bucket and proxmox_vm among hostile neighbours and hostile answers.

- what is not a resource's own is never taken (key names, adoptExisting, races
  between real processes, the retry of a create whose answer was lost);
- deadlines bind (a drip-fed answer, a held lock, a task that never ends, a FIFO);
- remote answers are untrusted (nonsense is an error naming the remote, escaped);
- paths (stub.stateDir) and headers (tokens) are checked.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from fediversity_providers import Conflict, InvalidInput, ProtocolError, Transient
from fediversity_providers.providers.proxmox_vm.stub import StubCluster
from fediversity_providers.testing import InProcessDriver

#: What a request may take past FEDIVERSITY_PROVIDERS_TIMEOUT: the roll-back grace (2 s) and a
#: provider process's start and exit (the README's security model states it).
MARGIN = 3.0
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"


def run(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "fediversity_providers", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def create(type_name, inputs, env=None):
    return run("create", "--type", type_name, "--stateful", "--inputs-json", json.dumps(inputs), env=env)


def timed_create(type_name, inputs, seconds=5):
    env = {**os.environ, "FEDIVERSITY_PROVIDERS_TIMEOUT": str(seconds)}
    started = time.monotonic()
    done = create(type_name, inputs, env)
    return done, time.monotonic() - started


def stub_inputs(state_dir, **changes):
    inputs = {"name": "web1", "template": "debian-12-cloud", "cores": 2, "memoryMiB": 2048, "diskGiB": 20,
              "sshAuthorizedKeys": [KEY], "stub": {"stateDir": str(state_dir)}}
    inputs.update(changes)
    return inputs


def user_vms(state_dir):
    return {int(k): vm for k, vm in StubCluster(state_dir).snapshot()["vms"].items() if not vm["template"]}


@pytest.fixture
def driver():
    with InProcessDriver() as d:
        yield d


# -- garage_bucket: what is its own ---------------------------------------------------------
def test_key_names_are_unambiguous(garage_emulator, tmp_path, driver):
    from fediversity_providers.providers.garage_bucket.testing import GarageTarget

    emu = garage_emulator
    token = tmp_path / "token"
    token.write_text(emu.token)
    g = GarageTarget(admin_endpoint=emu.endpoint, s3_endpoint=emu.s3_endpoint, token=emu.token, token_file=token,
                     api_version="v2", emulator=emu)
    a = driver.create("garage_bucket", g.inputs("site-a", keys=[{"name": "b-app"}]))
    b = driver.create("garage_bucket", g.inputs("site-a-b", keys=[{"name": "app"}]))
    assert a["keys"]["b-app"]["accessKeyId"] != b["keys"]["app"]["accessKeyId"]
    assert len({k["name"] for k in emu.keys.values()}) == 2
    assert a["creationToken"] and a["creationToken"] != b["creationToken"]
    driver.delete("garage_bucket", g.inputs("site-a", keys=[{"name": "b-app"}]), a)
    assert set(emu.keys) == {b["keys"]["app"]["accessKeyId"]}  # the other resource's key is untouched
    driver.delete("garage_bucket", g.inputs("site-a-b", keys=[{"name": "app"}]), b)


def test_a_create_sent_again_after_a_lost_answer_adopts_what_it_made(garage, driver):
    emu = garage.require_emulator()
    inputs = garage.inputs(f"media-{secrets.token_hex(4)}", keys=[{"name": "app", "write": True}])
    first = driver.create("garage_bucket", inputs)  # ... and NixOps4 never saw the answer
    again = driver.create("garage_bucket", inputs)
    assert again["bucketId"] == first["bucketId"]
    assert again["keys"]["app"]["accessKeyId"] == first["keys"]["app"]["accessKeyId"]
    assert len(emu.buckets) == 1 and len(emu.keys) == 1
    other = dict(inputs, keys=[{"name": "app"}])  # another resource claiming the alias
    with pytest.raises(Conflict, match="adoptExisting"):
        driver.create("garage_bucket", other)
    assert len(emu.buckets) == 1 and len(emu.keys) == 1  # its key was rolled back
    driver.delete("garage_bucket", inputs, again)
    assert emu.buckets == {} and emu.keys == {}


def test_key_names_never_collide():
    """Any two different (alias, entry name) pairs the schema allows give two key names."""
    from hypothesis import given, settings, strategies as st

    from fediversity_providers.providers.garage_bucket.converge import key_name

    aliases = st.from_regex(r"\A[a-z0-9][a-z0-9.-]{1,8}[a-z0-9]\Z")
    names = st.from_regex(r"\A[A-Za-z0-9_-]{1,8}\Z")

    @settings(max_examples=300, deadline=None, database=None)
    @given(aliases, names, aliases, names)
    def distinct(a1, n1, a2, n2):
        if (a1, n1) != (a2, n2):
            assert key_name(a1, n1, "t") != key_name(a2, n2, "t")

    distinct()


def test_concurrent_processes_creating_one_alias(garage, tmp_path):
    emu = garage.require_emulator()
    name = f"media-{secrets.token_hex(4)}"
    contenders = [garage.inputs(name, keys=[{"name": f"app{i}"}]) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda inputs: create("garage_bucket", inputs), contenders))
    won = [r for r in results if r.returncode == 0]
    lost = [r for r in results if r.returncode != 0]
    assert len(won) == 1, [r.stderr for r in results]
    assert all("conflict" in r.stderr and "adoptExisting" in r.stderr for r in lost), [r.stderr for r in lost]
    outputs = json.loads(won[0].stdout)
    assert list(emu.buckets) == [outputs["bucketId"]]
    assert set(emu.keys) == {k["accessKeyId"] for k in outputs["keys"].values()}  # the losers left nothing


# -- proxmox_vm: what is its own ---------------------------------------------------------------
def test_a_second_resource_naming_an_existing_vm(driver, tmp_path):
    first = driver.create("proxmox_vm", stub_inputs(tmp_path))
    second = stub_inputs(tmp_path, cores=4, sshAuthorizedKeys=[])
    with pytest.raises(Conflict, match="adoptExisting"):
        driver.create("proxmox_vm", second)
    vm = user_vms(tmp_path)[first["vmid"]]
    assert vm["cores"] == 2 and vm["sshkeys"] == [KEY]  # not rewritten
    assert driver.create("proxmox_vm", stub_inputs(tmp_path)) == first  # the same create again: its own
    adopted = driver.create("proxmox_vm", dict(second, adoptExisting=True))
    assert adopted["vmid"] == first["vmid"] and adopted["cores"] == 4
    assert list(user_vms(tmp_path)) == [first["vmid"]]


def test_concurrent_processes_creating_one_name_on_the_stub(tmp_path):
    contenders = [stub_inputs(tmp_path, cores=i + 1) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda inputs: create("proxmox_vm", inputs), contenders))
    won = [r for r in results if r.returncode == 0]
    assert len(won) == 1, [r.stderr for r in results]
    assert all("conflict" in r.stderr and "adoptExisting" in r.stderr for r in results if r.returncode)
    assert list(user_vms(tmp_path)) == [json.loads(won[0].stdout)["vmid"]]


def test_concurrent_processes_creating_one_name_on_the_api(emulated_pve):
    cluster = emulated_pve
    name = f"fdp-race-{uuid.uuid4().hex[:6]}"
    contenders = [{"name": name, "template": cluster.template, "cores": i + 1, "agentTimeoutSeconds": 5,
                   "taskTimeoutSeconds": 10, "api": cluster.api} for i in range(3)]
    cluster.emulator.task_seconds = 0.3
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda inputs: create("proxmox_vm", inputs), contenders))
    won = [r for r in results if r.returncode == 0]
    assert len(won) == 1, [r.stderr for r in results]
    assert all("adoptExisting" in r.stderr for r in results if r.returncode)
    cluster.emulator.settle()
    assert list(cluster.emulator.our_vms()) == [json.loads(won[0].stdout)["vmid"]]


@pytest.fixture
def emulated_pve(pve_cluster):
    if pve_cluster.real:
        pytest.skip("fault switches need the emulator")
    return pve_cluster


# -- deadlines ------------------------------------------------------------------------------------
def test_a_drip_fed_garage_answer_ends_at_the_deadline(garage):
    emu = garage.require_emulator()
    emu.fault("drip", None, times=100, delay=0.5)
    done, took = timed_create("garage_bucket", garage.inputs(f"media-{secrets.token_hex(4)}"))
    assert done.returncode == 1 and "Garage's admin API" in done.stderr, done.stderr
    assert took < 5 + MARGIN, took


def test_a_held_stub_lock_ends_at_the_deadline(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from fediversity_providers.providers.proxmox_vm.stub import StubCluster
        with StubCluster(sys.argv[1]).transaction():
            print("locked", flush=True)
            time.sleep(60)
    """), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        done, took = timed_create("proxmox_vm", stub_inputs(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1 and "stayed locked" in done.stderr, done.stderr
    assert took < 5 + MARGIN, took


def test_a_proxmox_task_that_never_ends(emulated_pve):
    emulated_pve.emulator.task_seconds = 10_000
    inputs = {"name": "never", "template": emulated_pve.template, "api": emulated_pve.api}
    done, took = timed_create("proxmox_vm", inputs)
    assert done.returncode == 1 and ("did not finish" in done.stderr or "deadline" in done.stderr), done.stderr
    assert took < 5 + MARGIN, took


def test_a_drip_fed_proxmox_answer(emulated_pve):
    emulated_pve.emulator.raw_answers.append(("/cluster/resources", b'{"data": []}' * 50))
    emulated_pve.emulator.drip_seconds = 0.2
    done, took = timed_create("proxmox_vm", {"name": "drip", "template": emulated_pve.template,
                                             "api": emulated_pve.api})
    assert done.returncode == 1 and ("no complete answer" in done.stderr or "deadline" in done.stderr), done.stderr
    assert took < 5 + MARGIN, took


@pytest.mark.parametrize("which", ["garage", "proxmox"])
def test_a_token_file_that_is_a_fifo_is_refused_at_once(which, garage, emulated_pve, tmp_path):
    fifo = tmp_path / "token.fifo"
    os.mkfifo(fifo)
    if which == "garage":
        inputs = dict(garage.inputs("media-fifo"), adminTokenFile=str(fifo))
        type_name, field = "garage_bucket", "adminTokenFile"
    else:
        inputs = {"name": "fifo", "template": "t", "api": {**emulated_pve.api, "tokenSecretFile": str(fifo)}}
        type_name, field = "proxmox_vm", "api.tokenSecretFile"
    done, took = timed_create(type_name, inputs)
    assert done.returncode == 1 and f"{field}: '{fifo}' is not a regular file (a FIFO)" in done.stderr, done.stderr
    assert took < 5 + MARGIN


# -- remote answers are untrusted -------------------------------------------------------------------
GARBAGE = [b"not json at all \x1b[31m", b'{"id": 5}', b"[1, 2]", b'{"keys": "x", "id": "ab"}', b"null",
           b'{"id": "b", "globalAliases": ["\\u001b]0;owned\\u0007"], "keys": [{"name": 3}]}']


@pytest.mark.parametrize("body", GARBAGE)
def test_garage_nonsense_is_a_protocol_error(garage, driver, body):
    emu = garage.require_emulator()
    op = "GetBucketInfo"
    inputs = garage.inputs(f"media-{secrets.token_hex(4)}")
    outputs = driver.create("garage_bucket", inputs)
    emu.fault("garbage", op, body=body, times=5)
    with pytest.raises(ProtocolError) as refused:
        driver.read("garage_bucket", inputs, outputs)
    text = str(refused.value)
    assert "Garage's admin API at" in text and "\x1b" not in text and "\x07" not in text
    emu.faults.clear()
    driver.delete("garage_bucket", inputs, outputs)


@pytest.mark.parametrize("path,body", [
    ("/cluster/resources", b"<html>\x1b[2J proxy error</html>"),
    ("/cluster/resources", b'{"data": [{"vmid": "x", "type": "qemu", "node": 1}]}'),
    ("/nodes$", b'{"data": "nodes"}'),
    ("/cluster/nextid", b'{"data": {"no": "id"}}'),
])
def test_proxmox_nonsense_is_a_protocol_error(emulated_pve, driver, path, body):
    emulated_pve.emulator.raw_answers.append((path, body))
    with pytest.raises(ProtocolError) as refused:
        driver.create("proxmox_vm", {"name": "nonsense", "template": emulated_pve.template,
                                     "api": emulated_pve.api, "taskTimeoutSeconds": 5})
    text = str(refused.value)
    assert "Proxmox VE" in text and "\x1b" not in text
    emulated_pve.emulator.raw_answers.clear()
    emulated_pve.emulator.settle()
    assert emulated_pve.emulator.our_vms() == {}


def test_remote_error_text_is_escaped(emulated_pve, driver):
    emulated_pve.emulator.inject_error(500, "boom \x1b[31m\u2028forged line", count=50, method="GET")
    with pytest.raises(Exception) as failed:
        driver.create("proxmox_vm", {"name": "esc", "template": emulated_pve.template, "api": emulated_pve.api})
    assert "\x1b" not in str(failed.value) and "\u2028" not in str(failed.value)


# -- paths and headers ------------------------------------------------------------------------------
@pytest.mark.parametrize("state_dir", ["relative/dir", "/tmp/../etc", "/tmp/./x", "/tmp//x", "/tmp/x\n"])
def test_stub_state_dir_must_be_absolute_and_normalised(driver, state_dir):
    with pytest.raises(InvalidInput, match="stub.stateDir"):
        driver.create("proxmox_vm", stub_inputs(state_dir))


@pytest.mark.parametrize("planted", ["cluster.lock", "cluster.json"])
def test_stub_files_are_not_opened_through_symlinks(driver, tmp_path, planted):
    target = tmp_path / "elsewhere.json"
    target.write_text("precious")
    state = tmp_path / "state"
    state.mkdir()
    (state / planted).symlink_to(target)
    with pytest.raises(InvalidInput, match="symbolic link"):
        driver.create("proxmox_vm", stub_inputs(state))
    assert target.read_text() == "precious"


@pytest.mark.parametrize("bad", ["tok\x01en", "tok\x7fen"])
def test_control_characters_never_reach_a_header(garage, emulated_pve, driver, tmp_path, bad):
    token = tmp_path / "token"
    token.write_text(bad)
    with pytest.raises(InvalidInput, match="adminTokenFile.*control character"):
        driver.create("garage_bucket", dict(garage.inputs("media-hdr"), adminTokenFile=str(token)))
    with pytest.raises(InvalidInput, match="api.tokenSecretFile.*control character"):
        driver.create("proxmox_vm", {"name": "hdr", "template": "t",
                                     "api": {**emulated_pve.api, "tokenSecretFile": str(token)}})
    assert bad not in str(emulated_pve.emulator.requests)


# -- heartbeats -----------------------------------------------------------------------------------
def test_long_proxmox_waits_write_heartbeats(emulated_pve, monkeypatch, capfd):
    from fediversity_providers.core import heartbeat

    monkeypatch.setattr(heartbeat, "DEFAULT_INTERVAL", 0.2)
    emulated_pve.emulator.task_seconds = 0.7
    with InProcessDriver() as d:
        out = d.create("proxmox_vm", {"name": "beats", "template": emulated_pve.template, "api": emulated_pve.api,
                                      "agentTimeoutSeconds": 10, "taskTimeoutSeconds": 30})
        err = capfd.readouterr().err
        assert "still waiting for clone of template" in err and "limit 30s" in err, err
        d.delete("proxmox_vm", {"name": "beats", "template": emulated_pve.template, "api": emulated_pve.api}, out)
