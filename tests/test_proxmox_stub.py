"""proxmox_vm on the stub backend: lifecycle, concurrency, crash safety, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from fediversity_providers import InvalidInput, NeedsReplacement, NotFound
from fediversity_providers.providers.proxmox_vm.backend import Marker, VmSpec
from fediversity_providers.providers.proxmox_vm.stub import StubBackend, StubCluster, default_state_dir
from fediversity_providers.testing import InProcessDriver, SubprocessDriver, conformance

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"


def vm_inputs(state_dir, **changes):
    inputs = {"name": "web1", "template": "debian-12-cloud", "cores": 2, "memoryMiB": 2048, "diskGiB": 20,
              "sshAuthorizedKeys": [KEY], "stub": {"stateDir": str(state_dir)}}
    inputs.update(changes)
    return inputs


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fediversity_providers", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def user_vms(state_dir):
    return {int(k): vm for k, vm in StubCluster(state_dir).snapshot()["vms"].items() if not vm["template"]}


@pytest.fixture
def driver():
    with InProcessDriver() as d:
        yield d


def test_conformance_in_process(driver, tmp_path):
    steps = conformance.check(driver, "proxmox_vm", vm_inputs(tmp_path),
                              vm_inputs(tmp_path, cores=4, memoryMiB=4096, diskGiB=30,
                                        ipConfig={"address": "10.1.2.3/24", "gateway": "10.1.2.1"}))
    assert steps[-1] == "read after delete says not found"
    assert user_vms(tmp_path) == {}


def test_conformance_through_a_provider_process(tmp_path):
    with SubprocessDriver() as driver:
        conformance.check(driver, "proxmox_vm", vm_inputs(tmp_path),
                          vm_inputs(tmp_path, started=False, diskGiB=25))
    assert user_vms(tmp_path) == {}


def test_invalid_inputs_are_refused(driver, tmp_path):
    assert conformance.check_invalid_inputs(driver, "proxmox_vm", vm_inputs(tmp_path), max_examples=30) > 0
    assert user_vms(tmp_path) == {}


def test_outputs_describe_the_vm(driver, tmp_path):
    out = driver.create("proxmox_vm", vm_inputs(tmp_path, template="9001", name="nix1"))
    assert out["vmid"] == 100 and out["node"] == "pve" and out["status"] == "running"
    assert out["ipv4Address"] == "10.0.0.100" and out["macAddress"].startswith("BC:24:11:")
    assert out["backend"] == "stub" and out["pendingReboot"] is False
    again = driver.create("proxmox_vm", vm_inputs(tmp_path, name="web2", started=False,
                                                  ipConfig={"address": "192.168.5.7/24", "gateway": None}))
    assert again["vmid"] == 101 and again["status"] == "stopped" and again["ipv4Address"] is None
    assert again["macAddress"] != out["macAddress"]
    started = driver.update("proxmox_vm", vm_inputs(tmp_path, name="web2", started=False,
                                                    ipConfig={"address": "192.168.5.7/24", "gateway": None}),
                            again, vm_inputs(tmp_path, name="web2", ipConfig={"address": "192.168.5.7/24"}))
    assert started["status"] == "running" and started["ipv4Address"] == "192.168.5.7"
    vm = user_vms(tmp_path)[101]
    assert vm["sshkeys"] == [KEY] and vm["ipconfig0"] == "ip=192.168.5.7/24" and vm["clonedFrom"] == 9000


def test_changes_to_a_running_vm_wait_for_a_reboot(driver, tmp_path):
    inputs = vm_inputs(tmp_path)
    out = driver.create("proxmox_vm", inputs)
    bigger = vm_inputs(tmp_path, cores=8, ipConfig={"address": "10.9.9.9/16", "gateway": "10.9.0.1"})
    changed = driver.update("proxmox_vm", inputs, out, bigger)
    assert changed["cores"] == 8 and changed["pendingReboot"] is True
    assert changed["ipv4Address"] == "10.0.0.100"  # still the address it booted with
    stopped = driver.update("proxmox_vm", bigger, changed, {**bigger, "started": False})
    assert stopped["status"] == "stopped" and stopped["pendingReboot"] is False
    booted = driver.update("proxmox_vm", {**bigger, "started": False}, stopped, bigger)
    assert booted["pendingReboot"] is False and booted["ipv4Address"] == "10.9.9.9"


def test_shrinking_the_disk_is_refused(driver, tmp_path):
    inputs = vm_inputs(tmp_path)
    out = driver.create("proxmox_vm", inputs)
    with pytest.raises(InvalidInput, match=r"diskGiB: .*disks can only grow") as caught:
        driver.update("proxmox_vm", inputs, out, vm_inputs(tmp_path, diskGiB=10, cores=6))
    assert "set diskGiB to 20 or more" in str(caught.value)
    vm = user_vms(tmp_path)[out["vmid"]]
    assert vm["disk"]["sizeGiB"] == 20 and vm["cores"] == 2  # nothing changed
    # A create asking for less than the template's disk is refused too, and leaves no VM.
    with pytest.raises(InvalidInput, match="the disk of template 'nixos-cloud' has 4 GiB; disks can only grow"):
        driver.create("proxmox_vm", vm_inputs(tmp_path, name="tiny", template="nixos-cloud", diskGiB=1))
    assert list(user_vms(tmp_path)) == [out["vmid"]]


@pytest.mark.parametrize("field,value", [("template", "nixos-cloud"), ("node", "pve2"), ("fullClone", False)])
def test_replacing_changes_are_refused(driver, tmp_path, field, value):
    inputs = vm_inputs(tmp_path)
    out = driver.create("proxmox_vm", inputs)
    with pytest.raises(NeedsReplacement, match=field):
        driver.update("proxmox_vm", inputs, out, {**inputs, field: value})
    assert driver.read("proxmox_vm", inputs, out) == out


def test_moving_to_another_cluster_is_refused(driver, tmp_path):
    inputs = vm_inputs(tmp_path / "a")
    out = driver.create("proxmox_vm", inputs)
    with pytest.raises(NeedsReplacement, match="stub.stateDir"):
        driver.update("proxmox_vm", inputs, out, vm_inputs(tmp_path / "b"))


def test_bad_template_and_node(driver, tmp_path):
    with pytest.raises(NotFound, match="no template named 'ubuntu'.*9000 \\(debian-12-cloud\\)"):
        driver.create("proxmox_vm", vm_inputs(tmp_path, template="ubuntu"))
    with pytest.raises(NotFound, match="template 4242 does not exist"):
        driver.create("proxmox_vm", vm_inputs(tmp_path, template="4242"))
    with pytest.raises(InvalidInput, match="node 'nope' is not in the simulated cluster"):
        driver.create("proxmox_vm", vm_inputs(tmp_path, node="nope"))
    out = driver.create("proxmox_vm", vm_inputs(tmp_path))
    with pytest.raises(InvalidInput, match=f"VM {out['vmid']} is not a template"):
        driver.create("proxmox_vm", vm_inputs(tmp_path, name="other", template=str(out["vmid"])))
    assert list(user_vms(tmp_path)) == [out["vmid"]]


def test_a_retried_create_adopts_its_own_vm(driver, tmp_path):
    # The first attempt cloned, then its process died before answering.
    backend = StubBackend(tmp_path)
    spec = VmSpec.from_inputs(vm_inputs(tmp_path))
    first = backend.clone("debian-12-cloud", "pve", spec, full=True, storage=None)
    out = driver.create("proxmox_vm", vm_inputs(tmp_path))
    assert out["vmid"] == first.vmid and out["status"] == "running" and out["diskGiB"] == 20
    assert list(user_vms(tmp_path)) == [first.vmid]


def test_a_vm_removed_behind_our_back_reads_as_gone(driver, tmp_path):
    inputs = vm_inputs(tmp_path)
    out = driver.create("proxmox_vm", inputs)
    tool = [sys.executable, "-m", "fediversity_providers.providers.proxmox_vm.stub", "--state-dir", str(tmp_path)]
    subprocess.run([*tool, "stop", str(out["vmid"])], check=True)
    assert driver.read("proxmox_vm", inputs, out)["status"] == "stopped"  # drift shows
    subprocess.run([*tool, "remove", str(out["vmid"])], check=True)
    with pytest.raises(NotFound, match=f"VM {out['vmid']} on node 'pve' .* does not exist"):
        driver.read("proxmox_vm", inputs, out)
    driver.delete("proxmox_vm", inputs, out)  # gone already: success
    # Another VM that took the same vmid is not ours: it reads as gone and delete leaves it alone.
    other = driver.create("proxmox_vm", vm_inputs(tmp_path, name="intruder"))
    assert other["vmid"] == out["vmid"]
    with pytest.raises(NotFound, match="does not carry the marker"):
        driver.read("proxmox_vm", inputs, out)
    driver.delete("proxmox_vm", inputs, out)
    assert list(user_vms(tmp_path)) == [other["vmid"]]


def test_state_is_shared_between_processes(tmp_path):
    inputs = json.dumps(vm_inputs(tmp_path))
    created = run("create", "--type", "proxmox_vm", "--inputs-json", inputs, "--stateful")
    assert created.returncode == 0, created.stderr
    read = run("read", "--type", "proxmox_vm", "--inputs-json", inputs, "--outputs-json", created.stdout)
    assert read.returncode == 0 and json.loads(read.stdout) == json.loads(created.stdout)
    deleted = run("delete", "--type", "proxmox_vm", "--inputs-json", inputs, "--outputs-json", created.stdout)
    assert deleted.returncode == 0, deleted.stderr
    gone = run("read", "--type", "proxmox_vm", "--inputs-json", inputs, "--outputs-json", created.stdout)
    assert gone.returncode == 1 and "proxmox_vm: not found: VM 100 on node 'pve'" in gone.stderr


def test_default_state_dir_follows_xdg_state_home(tmp_path):
    inputs = vm_inputs(tmp_path)
    del inputs["stub"]
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    created = run("create", "--type", "proxmox_vm", "--inputs-json", json.dumps(inputs), "--stateful", env=env)
    assert created.returncode == 0, created.stderr
    state_dir = tmp_path / "xdg" / "fediversity-providers" / "proxmox-stub"
    assert (state_dir / "cluster.json").exists() and list(user_vms(state_dir)) == [100]


def test_default_state_dir_without_xdg_state_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_state_dir() == str(tmp_path / ".local/state/fediversity-providers/proxmox-stub")


def test_concurrent_creates_never_share_a_vmid(tmp_path):
    def create(i):
        done = run("create", "--type", "proxmox_vm", "--stateful",
                   "--inputs-json", json.dumps(vm_inputs(tmp_path, name=f"vm{i}")))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(create, range(8)))
    vmids = sorted(out["vmid"] for out in outputs)
    assert vmids == list(range(100, 108))
    assert len({out["macAddress"] for out in outputs}) == 8
    vms = user_vms(tmp_path)
    assert sorted(vms) == vmids and {vms[o["vmid"]]["name"] for o in outputs} == {f"vm{i}" for i in range(8)}
    assert all(vm["status"] == "running" and vm["disk"]["sizeGiB"] == 20 for vm in vms.values())


CRASH_IN_SAVE = textwrap.dedent("""
    import os, sys
    from fediversity_providers.providers.proxmox_vm.backend import VmSpec
    from fediversity_providers.providers.proxmox_vm.stub import StubBackend
    real_replace = os.replace
    def crash(src, dst):  # the temporary file is written and synced; die before it replaces the state
        os.kill(os.getpid(), 9)
    os.replace = crash
    spec = VmSpec.from_inputs({"name": "crashy"})
    StubBackend(sys.argv[1]).clone("debian-12-cloud", "pve", spec, full=True, storage=None)
""")

DIE_HOLDING_THE_LOCK = textwrap.dedent("""
    import os, sys
    from fediversity_providers.providers.proxmox_vm.stub import StubCluster
    with StubCluster(sys.argv[1]).transaction() as state:
        state["vms"]["100"] = "half"
        os.kill(os.getpid(), 9)
""")


def test_a_crash_leaves_no_half_written_state(driver, tmp_path):
    inputs = vm_inputs(tmp_path)
    out = driver.create("proxmox_vm", inputs)
    before = (tmp_path / "cluster.json").read_text()
    for script in (DIE_HOLDING_THE_LOCK, CRASH_IN_SAVE):
        crashed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, timeout=60)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        assert (tmp_path / "cluster.json").read_text() == before  # the old state, whole
    assert list(tmp_path.glob(".cluster.json.*.tmp"))  # the dead writer's temporary file is still there
    # The lock died with its holder; the next process goes on, and its first write sweeps the leftover away.
    assert driver.read("proxmox_vm", inputs, out) == out
    nxt = driver.create("proxmox_vm", vm_inputs(tmp_path, name="after-crash"))
    assert nxt["vmid"] == 101
    assert not list(tmp_path.glob(".cluster.json.*.tmp"))


def test_an_unreadable_state_file_is_reported(driver, tmp_path):
    (tmp_path / "cluster.json").write_text("{not json")
    with pytest.raises(Exception, match=r"cluster file .*cluster.json is unreadable.*remove it"):
        driver.create("proxmox_vm", vm_inputs(tmp_path))


def test_marker_tags_are_valid_proxmox_tags():
    import re

    tag = Marker("web1.example.org").tag
    assert re.fullmatch(r"[a-z0-9_][a-z0-9_\-+.]*", tag) and tag != Marker("web2").tag
    assert Marker("x").carried_by(f"foo;{Marker('x').tag}", None)
    assert not Marker("x").carried_by("foo", "bar")


def test_renaming_moves_the_marker(driver, tmp_path):
    inputs = vm_inputs(tmp_path)
    out = driver.create("proxmox_vm", inputs)
    renamed = vm_inputs(tmp_path, name="web1-renamed")
    after = driver.update("proxmox_vm", inputs, out, renamed)
    assert after["vmid"] == out["vmid"] and after["name"] == "web1-renamed"
    assert user_vms(tmp_path)[out["vmid"]]["tags"] == Marker("web1-renamed").tag
    assert driver.read("proxmox_vm", renamed, after) == after
    driver.delete("proxmox_vm", renamed, after)
    assert user_vms(tmp_path) == {}


def test_a_lock_held_too_long_is_a_temporary_failure(driver, tmp_path, monkeypatch):
    from fediversity_providers import Transient
    from fediversity_providers.providers.proxmox_vm import stub

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from fediversity_providers.providers.proxmox_vm.stub import StubCluster
        with StubCluster(sys.argv[1]).transaction():
            print("locked", flush=True)
            time.sleep(30)
    """), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(stub, "LOCK_TIMEOUT", 0.3)
        with pytest.raises(Transient, match="stayed locked"):
            driver.create("proxmox_vm", vm_inputs(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    assert driver.create("proxmox_vm", vm_inputs(tmp_path))["vmid"] == 100  # free again once the holder died
