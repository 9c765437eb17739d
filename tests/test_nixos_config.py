"""nixos_config against fake NixOS hosts: real sshd, real ``nix copy`` into each host's own store."""

from __future__ import annotations

import os
import threading
import time

import pytest

from fediversity_providers import AccessDenied, Conflict, InvalidInput, NotFound, ProviderError, Unreachable
from fediversity_providers.core.testing.nixos import PAUSE_HOOK
from fediversity_providers.testing import InProcessDriver, SubprocessDriver, conformance, require_executable

TYPE = "nixos_config"


@pytest.fixture
def driver():
    with InProcessDriver() as d:
        yield d


@pytest.fixture
def t1(toplevel_builder):
    return toplevel_builder("one", payloads=2)


@pytest.fixture
def t2(toplevel_builder):
    return toplevel_builder("two", payloads=1)


def inputs_for(host, toplevel, **extra):
    ssh = {"connectTimeout": 3, **extra.pop("ssh", {})}
    return {"ssh": host.ssh_input(**ssh), "toplevel": str(toplevel), **extra}


def test_conformance(fake_nixos_hosts, t1, t2):
    host, = fake_nixos_hosts(1)
    with InProcessDriver() as driver:
        steps = conformance.check(driver, TYPE, inputs_for(host, t1), inputs_for(host, t2))
    assert steps[-1] == "read after delete says not found"
    # delete kept the machine on its configuration (onDelete = keep)
    assert host.current_system() == t2.path
    assert host.generation() == 2


def test_invalid_inputs_are_refused(driver, t1):
    ssh = {"host": "127.0.0.1", "hostPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5vY2xx"}
    tried = conformance.check_invalid_inputs(driver, TYPE, {"ssh": ssh, "toplevel": t1.path}, max_examples=25)
    assert tried > 0


def test_first_and_second_deploy(fake_nixos_hosts, driver, t1, t2):
    host, = fake_nixos_hosts(1)
    first = driver.create(TYPE, inputs_for(host, t1))
    assert first == {"toplevel": t1.path, "generation": 1, "previousToplevel": None, "keys": {}}
    assert all(host.has_path(p) for p in t1.closure())
    assert host.current_system() == t1.path
    assert host.boot_default() == t1.path

    second = driver.update(TYPE, inputs_for(host, t1), first, inputs_for(host, t2))
    assert second == {"toplevel": t2.path, "generation": 2, "previousToplevel": t1.path, "keys": {}}
    assert host.current_system() == t2.path
    assert host.profile_toplevel() == t2.path
    # default profile and a toplevel with bin/apply: activation went through bin/apply
    applied = host.file("/var/lib/fake-nixos/applied").read_text().split("\n")
    assert f"switch {t2.path}" in applied


def test_the_subprocess_provider_deploys_and_reports_progress(fake_nixos_hosts, t1, capfd):
    host, = fake_nixos_hosts(1)
    driver = SubprocessDriver()
    try:
        magic = {"magic": {"enable": True, "confirmTimeout": 10}}
        outputs = driver.create(TYPE, inputs_for(host, t1, rollback=magic))
        assert outputs["toplevel"] == t1.path
        assert driver.read(TYPE, inputs_for(host, t1), outputs) == outputs
    finally:
        assert driver.close() == 0
    err = capfd.readouterr().err
    words = [line.split(": ")[1] for line in err.splitlines() if line.startswith("nixos_config: ")]
    phases = [w for w in words if w in ("copying", "building", "activating", "confirming", "done")]
    assert phases == ["copying", "activating", "confirming", "done"], err
    assert f"copying: {len(t1.closure())} paths to root@{host.address}" in err


@pytest.mark.parametrize("apply", [True, False], ids=["bin-apply", "switch-to-configuration"])
def test_each_action(fake_nixos_hosts, toplevel_builder, apply):
    host, = fake_nixos_hosts(1)
    base = toplevel_builder("base", apply=apply)
    new = {a: toplevel_builder(f"act-{a}", apply=apply) for a in ("boot", "test", "dry-activate")}
    with InProcessDriver() as driver:
        driver.create(TYPE, inputs_for(host, base))

        out = driver.create(TYPE, inputs_for(host, new["boot"], action="boot"))
        assert host.current_system() == base.path, "boot must not change the running system"
        assert host.boot_default() == new["boot"].path
        assert out == {"toplevel": base.path, "generation": 2, "previousToplevel": base.path, "keys": {}}

        out = driver.create(TYPE, inputs_for(host, new["test"], action="test"))
        assert host.current_system() == new["test"].path
        assert host.generation() == 2 and host.boot_default() == new["boot"].path, "test must not touch the profile"
        assert out["toplevel"] == new["test"].path and out["generation"] == 2

        before = (host.current_system(), host.generation(), host.boot_default())
        out = driver.create(TYPE, inputs_for(host, new["dry-activate"], action="dry-activate"))
        assert (host.current_system(), host.generation(), host.boot_default()) == before
        assert out["toplevel"] == new["test"].path
        assert host.activations()[-1] == ("dry-activate", new["dry-activate"].path)
        if not apply:
            assert not host.file("/var/lib/fake-nixos/applied").exists()


def test_custom_profile(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    profile = "/nix/var/nix/profiles/deployed"
    out = driver.create(TYPE, inputs_for(host, t1, profile=profile))
    assert out["generation"] == 1
    assert host.profile_toplevel(profile) == t1.path
    assert host.generation() is None, "the default system profile stays untouched"


def test_failed_activation_rolls_back(fake_nixos_hosts, driver, t1, toplevel_builder):
    host, = fake_nixos_hosts(1)
    broken = toplevel_builder("broken", fail=True)
    first = driver.create(TYPE, inputs_for(host, t1))
    with pytest.raises(Conflict) as caught:
        driver.update(TYPE, inputs_for(host, t1), first, inputs_for(host, broken))
    message = str(caught.value)
    assert "failed with status 4" in message
    assert "rolled back" in message
    assert "broken.service failed" in message, "the activation's stderr tail is shown"
    assert host.current_system() == t1.path
    assert host.profile_toplevel() == t1.path and host.generation() == 1
    assert host.activations()[-1] == ("switch", t1.path), "the previous system was activated again"
    assert driver.read(TYPE, inputs_for(host, t1), first) == first


def test_failed_activation_without_rollback(fake_nixos_hosts, driver, t1, toplevel_builder):
    host, = fake_nixos_hosts(1)
    broken = toplevel_builder("broken", fail=True)
    driver.create(TYPE, inputs_for(host, t1))
    with pytest.raises(Conflict, match="did not roll back"):
        driver.create(TYPE, inputs_for(host, broken, rollback={"onFailure": False}))
    assert host.current_system() == broken.path
    assert host.generation() == 2


def test_failed_first_deploy_leaves_no_profile(fake_nixos_hosts, driver, toplevel_builder):
    host, = fake_nixos_hosts(1)
    broken = toplevel_builder("broken", fail=True)
    with pytest.raises(Conflict, match="rolled back"):
        driver.create(TYPE, inputs_for(host, broken))
    assert host.current_system() is None
    assert host.generation() is None


def test_magic_rollback_confirms_when_reachable(fake_nixos_hosts, driver, t1, t2):
    host, = fake_nixos_hosts(1)
    magic = {"magic": {"enable": True, "confirmTimeout": 5}}
    driver.create(TYPE, inputs_for(host, t1, rollback=magic))
    out = driver.create(TYPE, inputs_for(host, t2, rollback=magic))
    assert out["toplevel"] == t2.path and out["generation"] == 2
    time.sleep(5.5)  # past the watchdog's deadline: it was cancelled
    assert host.current_system() == t2.path


def test_magic_rollback_when_host_becomes_unreachable(fake_nixos_hosts, driver, t1, toplevel_builder):
    host, = fake_nixos_hosts(1)
    cutting = toplevel_builder("cuts-network", hook=PAUSE_HOOK)
    magic = {"magic": {"enable": True, "confirmTimeout": 3}}
    first = driver.create(TYPE, inputs_for(host, t1, ssh={"connectTimeout": 2}))

    def cut_network_right_after_the_switch():
        host.wait_for(lambda: host.file("/var/lib/fake-nixos/paused").exists(), what="switch")
        assert host.current_system() == cutting.path
        host.make_unreachable()
        host.write_file("/var/lib/fake-nixos/release", "")

    cutter = threading.Thread(target=cut_network_right_after_the_switch)
    cutter.start()
    started = time.monotonic()
    try:
        with pytest.raises(Unreachable) as caught:
            driver.create(TYPE, inputs_for(host, cutting, rollback=magic, ssh={"connectTimeout": 2}))
    finally:
        cutter.join()
    assert "magic rollback" in str(caught.value)
    assert time.monotonic() - started < 30
    # the machine reverts by itself, while still unreachable
    host.wait_for(lambda: host.current_system() == t1.path, timeout=15, what="rollback by the watchdog")
    host.wait_for(lambda: host.generation() == 1, timeout=5, what="profile rollback")
    host.make_reachable()
    observed = driver.read(TYPE, inputs_for(host, t1), first)
    assert observed["toplevel"] == t1.path and observed["generation"] == 1


def test_read_shows_drift_after_a_manual_switch(fake_nixos_hosts, driver, t1, t2):
    host, = fake_nixos_hosts(1)
    driver.create(TYPE, inputs_for(host, t1))
    recorded = driver.create(TYPE, inputs_for(host, t2))
    host.run("nix-env -p /nix/var/nix/profiles/system --rollback "
             "&& /nix/var/nix/profiles/system/bin/switch-to-configuration switch")
    observed = driver.read(TYPE, inputs_for(host, t2), recorded)
    assert observed["toplevel"] == t1.path != recorded["toplevel"]
    assert observed["generation"] == 1 != recorded["generation"]
    # applying again converges
    again = driver.update(TYPE, inputs_for(host, t2), observed, inputs_for(host, t2))
    assert again["toplevel"] == t2.path and host.current_system() == t2.path


def test_wrong_host_key_copies_nothing(fake_nixos_hosts, driver, t1):
    host, other = fake_nixos_hosts(2)
    with pytest.raises(AccessDenied) as caught:
        driver.create(TYPE, inputs_for(host, t1, ssh={"hostPublicKey": other.host_public_key}))
    message = str(caught.value)
    assert "ssh.hostPublicKey" in message and "Host key verification failed" in message
    assert not any(host.has_path(p) for p in t1.closure())
    assert host.current_system() is None


def test_host_down_mid_copy(fake_nixos_hosts, driver, toplevel_builder):
    host, = fake_nixos_hosts(1)
    big = toplevel_builder("big", payloads=12, payload_size=16 * 1024 * 1024)
    first_payload = big.closure()[0]

    def cut_when_copying():
        host.wait_for(lambda: host.has_path(first_payload), timeout=30, what="copy")
        host.make_unreachable()

    cutter = threading.Thread(target=cut_when_copying)
    cutter.start()
    try:
        with pytest.raises(Unreachable) as caught:
            driver.create(TYPE, inputs_for(host, big, ssh={"connectTimeout": 2}))
    finally:
        cutter.join()
    message = str(caught.value)
    assert "ssh said" in message and "not responding" in message, message
    assert "nothing was activated" in message
    host.make_reachable()
    assert host.current_system() is None and host.generation() is None
    assert not host.has_path(big.path)


def test_unreachable_host_is_reported_with_ssh_error(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    host.stop_sshd()
    with pytest.raises(Unreachable, match="Connection refused"):
        driver.create(TYPE, inputs_for(host, t1))


def test_missing_local_path_is_invalid_input(driver, t1):
    missing = t1.path[:-3] + "xyz"
    ssh = {"host": "127.0.0.1", "hostPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5vY2xx"}
    with pytest.raises(InvalidInput, match="toplevel.*not a valid path in the local Nix store"):
        driver.create(TYPE, {"ssh": ssh, "toplevel": missing})


def test_delete_keeps_or_rolls_back(fake_nixos_hosts, driver, t1, t2, toplevel_builder):
    keep_host, back_host = fake_nixos_hosts(2)
    base = toplevel_builder("before-first-deploy")
    # back_host ran `base` before the resource's first deploy: deployed by a
    # resource that was deleted since (which left the machine on it)
    driver.create(TYPE, inputs_for(back_host, base))
    driver.delete(TYPE, inputs_for(back_host, base), {})
    assert back_host.current_system() == base.path and back_host.generation() == 1

    for host, on_delete in ((keep_host, "keep"), (back_host, "rollback")):
        ins = inputs_for(host, t1, onDelete=on_delete)
        out = driver.create(TYPE, ins)
        out = driver.update(TYPE, ins, out, dict(ins, toplevel=t2.path))
        driver.delete(TYPE, dict(ins, toplevel=t2.path), out)
        with pytest.raises(NotFound):
            driver.read(TYPE, dict(ins, toplevel=t2.path), out)
        driver.delete(TYPE, dict(ins, toplevel=t2.path), out)  # already gone: succeeds

    assert keep_host.current_system() == t2.path
    assert back_host.current_system() == base.path
    assert back_host.profile_toplevel() == base.path


def test_delete_rollback_without_earlier_generation_keeps(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    ins = inputs_for(host, t1, onDelete="rollback")
    out = driver.create(TYPE, ins)
    driver.delete(TYPE, ins, out)
    assert host.current_system() == t1.path


def test_build_on_target(fake_nixos_hosts, driver, toplevel_builder):
    host, = fake_nixos_hosts(1)
    unbuilt = toplevel_builder("built-there", realise=False)
    assert not os.path.exists(unbuilt.path)
    with pytest.raises(InvalidInput, match="buildOnTarget"):
        driver.create(TYPE, inputs_for(host, unbuilt.drv))
    out = driver.create(TYPE, inputs_for(host, unbuilt.drv, buildOnTarget=True))
    assert out["toplevel"] == unbuilt.path == host.current_system()
    assert not os.path.exists(unbuilt.path), "it was built on the machine, not here"


def test_non_root_user_deploys_with_sudo(fake_nixos_hosts, driver, t1, t2):
    host, = fake_nixos_hosts(1)
    require_executable("sudo", "sudo")
    ssh = host.add_deploy_user("deploy")
    first = driver.create(TYPE, inputs_for(host, t1, ssh=ssh))
    second = driver.update(TYPE, inputs_for(host, t1, ssh=ssh), first, inputs_for(host, t2, ssh=ssh))
    assert second == {"toplevel": t2.path, "generation": 2, "previousToplevel": t1.path, "keys": {}}
    assert host.current_system() == t2.path
    assert host.file("/var/lib/fediversity-providers/nixos_config").stat().st_uid == 0, "activation ran as root"
    driver.delete(TYPE, inputs_for(host, t2, ssh=ssh), second)


def test_sudo_asking_for_a_password_is_reported(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    require_executable("sudo", "sudo")
    ssh = host.add_deploy_user("nosudo", sudo=False)
    with pytest.raises(AccessDenied, match="sudo: .*password"):
        driver.create(TYPE, inputs_for(host, t1, ssh=ssh))
    assert host.current_system() is None


def test_a_path_that_is_not_a_system_is_refused(fake_nixos_hosts, driver, toplevel_builder):
    host, = fake_nixos_hosts(1)
    payload = toplevel_builder("with-payload", payloads=1).closure()[0]
    with pytest.raises(InvalidInput, match="switch-to-configuration is missing"):
        driver.create(TYPE, inputs_for(host, payload))
    assert host.current_system() is None and host.generation() is None


def test_a_host_that_never_answers_times_out(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    host.hang()
    started = time.monotonic()
    with pytest.raises(Unreachable, match="ssh said"):
        driver.create(TYPE, inputs_for(host, t1, ssh={"connectTimeout": 2}))
    assert time.monotonic() - started < 15


def test_concurrent_provider_processes_deploy_to_their_own_hosts(fake_nixos_hosts, t1):
    hosts = fake_nixos_hosts(3)
    drivers = [SubprocessDriver() for _ in hosts]
    results: dict[int, object] = {}

    def deploy(i):
        try:
            results[i] = drivers[i].create(TYPE, inputs_for(hosts[i], t1))
        except Exception as error:  # reported below
            results[i] = error

    threads = [threading.Thread(target=deploy, args=(i,)) for i in range(len(hosts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for d in drivers:
        assert d.close() == 0
    assert all(isinstance(r, dict) and r["toplevel"] == t1.path for r in results.values()), results
    assert [h.current_system() for h in hosts] == [t1.path] * 3


def test_existing_vm_output_feeds_straight_in(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    vm = driver.create("existing_vm", {"ssh": host.ssh_input(connectTimeout=3)})
    out = driver.create(TYPE, {"ssh": vm["ssh"], "toplevel": t1.path})
    assert out["toplevel"] == t1.path == host.current_system()


def test_missing_tools_are_named(driver, t1, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    ssh = {"host": "127.0.0.1", "hostPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5vY2xx"}
    with pytest.raises(ProviderError, match="'nix' is not on the provider's PATH"):
        driver.create(TYPE, {"ssh": ssh, "toplevel": t1.path})
