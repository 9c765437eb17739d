"""proxmox_vm on a Proxmox VE API: the emulator (always), a real cluster (with PVE_URL & co.).

Every request the client sends is checked against Proxmox VE's API schema by
the emulator; the fixtures fail a test that sent one the schema refuses.
Each fault test ends by checking that no VM is left that the outputs do not name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from fediversity_providers import AccessDenied, InvalidInput, NotFound, ProviderError, Transient
from fediversity_providers.testing import InProcessDriver, conformance

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test key"


def vm_inputs(cluster, **changes):
    inputs = {"name": f"fdp-test-{uuid.uuid4().hex[:8]}", "node": cluster.node, "template": cluster.template,
              "cores": 1, "memoryMiB": 1024, "diskGiB": 8, "sshAuthorizedKeys": [KEY],
              "agentTimeoutSeconds": 120 if cluster.real else 10, "taskTimeoutSeconds": 600 if cluster.real else 10,
              "api": cluster.api}
    inputs.update(changes)
    return inputs


@pytest.fixture
def driver():
    with InProcessDriver() as d:
        yield d


@pytest.fixture
def emulated(pve_cluster):
    if pve_cluster.real:
        pytest.skip("fault switches need the emulator")
    return pve_cluster


def no_orphans(cluster, *outputs):
    assert set(cluster.our_vms()) == {o["vmid"] for o in outputs}, "a VM is left that no outputs name"


def test_conformance(driver, pve_cluster):
    inputs = vm_inputs(pve_cluster)
    updated = {**inputs, "cores": 2, "memoryMiB": 2048, "diskGiB": 10,
               "ipConfig": {"address": "10.20.30.40/24", "gateway": "10.20.30.1"}}
    steps = conformance.check(driver, "proxmox_vm", inputs, updated)
    assert steps[-1] == "read after delete says not found"
    assert inputs["name"] not in pve_cluster.our_vms({inputs["name"]}).values()


def test_outputs_and_what_the_cluster_holds(driver, emulated):
    inputs = vm_inputs(emulated, cloudInitUser="ops", ipConfig={"address": "192.0.2.10/24", "gateway": "192.0.2.1"})
    out = driver.create("proxmox_vm", inputs)
    assert out["backend"] == "api" and out["status"] == "running" and out["ipv4Address"] == "192.0.2.10"
    vm = emulated.emulator.vms[out["vmid"]]
    assert out["macAddress"] in vm["config"]["net0"] and vm["config"]["agent"] == "1"
    assert vm["config"]["ciuser"] == "ops" and vm["config"]["ipconfig0"] == "ip=192.0.2.10/24,gw=192.0.2.1"
    assert vm["config"]["sshkeys"] == KEY.replace(" ", "%20") + "%0A"  # %20, never '+'
    assert "size=8G" in vm["config"]["scsi0"] and vm["config"]["tags"].startswith("fdp-")
    # Cores on a running VM wait for a reboot; stopping and starting applies them.
    bigger = {**inputs, "cores": 4}
    pending = driver.update("proxmox_vm", inputs, out, bigger)
    assert pending["cores"] == 4 and pending["pendingReboot"] is True
    stopped = driver.update("proxmox_vm", bigger, pending, {**bigger, "started": False})
    assert stopped["status"] == "stopped" and stopped["ipv4Address"] is None
    started = driver.update("proxmox_vm", {**bigger, "started": False}, stopped, bigger)
    assert started["pendingReboot"] is False and started["status"] == "running"
    assert vm["config"]["cores"] == "4"
    with pytest.raises(InvalidInput, match="diskGiB: .*can only grow"):
        driver.update("proxmox_vm", bigger, started, {**bigger, "diskGiB": 4})
    driver.delete("proxmox_vm", bigger, started)
    no_orphans(emulated)


def test_a_vm_deleted_out_of_band_reads_as_gone(driver, emulated):
    inputs = vm_inputs(emulated)
    out = driver.create("proxmox_vm", inputs)
    emulated.emulator.vms.pop(out["vmid"])
    with pytest.raises(NotFound, match=f"VM {out['vmid']} on node 'pve' does not exist"):
        driver.read("proxmox_vm", inputs, out)
    driver.delete("proxmox_vm", inputs, out)  # already gone: success
    no_orphans(emulated)


def test_5xx_answers(driver, emulated):
    em = emulated.emulator
    em.inject_error(503, count=2, method="GET")  # reads are retried
    em.inject_error(500, "got timeout", count=1, method="POST", path="/config$")  # a write is not
    inputs = vm_inputs(emulated)
    with pytest.raises(Transient, match="got timeout"):
        driver.create("proxmox_vm", inputs)
    no_orphans(emulated)  # the half-made VM was removed
    out = driver.create("proxmox_vm", inputs)
    no_orphans(emulated, out)


def test_slow_tasks(driver, emulated):
    em = emulated.emulator
    em.task_seconds = 1.5
    inputs = vm_inputs(emulated, taskTimeoutSeconds=1)
    with pytest.raises(Transient, match="did not finish within 1 s"):
        driver.create("proxmox_vm", inputs)
    # The clean-up's deletion timed out too, but goes on on the cluster.
    assert len(em.our_vms()) == 1
    em.settle()
    no_orphans(emulated)
    em.task_seconds = 0.05
    out = driver.create("proxmox_vm", {**inputs, "taskTimeoutSeconds": 10})
    no_orphans(emulated, out)


def test_slow_tasks_within_the_timeout(driver, emulated):
    emulated.emulator.task_seconds = 0.6
    out = driver.create("proxmox_vm", vm_inputs(emulated, taskTimeoutSeconds=5))
    assert out["status"] == "running"
    no_orphans(emulated, out)


@pytest.mark.parametrize("task", ["qmclone", "qmconfig", "qmresize", "qmstart"])
def test_a_failing_task(driver, emulated, task):
    em = emulated.emulator
    em.fail_task[task] = f"{task} failed: simulated failure"
    with pytest.raises(ProviderError, match=f"failed: {task} failed: simulated failure; log: .*TASK ERROR"):
        driver.create("proxmox_vm", vm_inputs(emulated))
    no_orphans(emulated)
    del em.fail_task[task]
    out = driver.create("proxmox_vm", vm_inputs(emulated))
    no_orphans(emulated, out)


def test_warnings_are_success(driver, emulated):
    emulated.emulator.warn_task["qmstart"] = "WARNINGS: 2"
    out = driver.create("proxmox_vm", vm_inputs(emulated))
    assert out["status"] == "running"
    no_orphans(emulated, out)


def test_a_lost_answer_after_a_successful_clone(driver, emulated):
    em = emulated.emulator
    em.lose_answer.add("qmclone")
    inputs = vm_inputs(emulated)
    out = driver.create("proxmox_vm", inputs)
    clones = [r for r in em.requests if r[0] == "POST" and r[1].endswith("/clone")]
    assert len(clones) == 1  # adopted, not cloned twice
    no_orphans(emulated, out)


def test_a_create_retried_by_a_new_process_adopts_its_vm(driver, emulated):
    em = emulated.emulator
    em.lose_answer.add("qmstart")  # the first attempt dies with the VM cloned and configured
    inputs = vm_inputs(emulated)
    em.inject_error(502, "Bad Gateway", count=20, method="DELETE")  # and cannot clean up
    with pytest.raises(Transient):
        driver.create("proxmox_vm", inputs)
    assert len(em.our_vms()) == 1
    em.lose_answer.clear()
    em._errors.clear()
    out = driver.create("proxmox_vm", inputs)
    no_orphans(emulated, out)


def test_an_agent_that_never_answers(driver, emulated):
    em = emulated.emulator
    em.agent_never = True
    with pytest.raises(Transient, match="guest agent of VM .* did not report an IPv4 address .* within 1 s"):
        driver.create("proxmox_vm", vm_inputs(emulated, agentTimeoutSeconds=1))
    no_orphans(emulated)
    # Not waiting for the agent: the static address, or none with DHCP.
    static = driver.create("proxmox_vm", vm_inputs(emulated, agentTimeoutSeconds=0,
                                                   ipConfig={"address": "198.51.100.7/24"}))
    dhcp = driver.create("proxmox_vm", vm_inputs(emulated, agentTimeoutSeconds=0))
    assert static["ipv4Address"] == "198.51.100.7" and dhcp["ipv4Address"] is None
    no_orphans(emulated, static, dhcp)


def test_a_vmid_race(driver, emulated):
    em = emulated.emulator
    em.steal_ids = 2  # another client takes the id twice between nextid and clone
    out = driver.create("proxmox_vm", vm_inputs(emulated))
    assert out["vmid"] == 102
    no_orphans(emulated, out)


def test_the_early_400_of_a_task_is_tolerated(driver, emulated):
    em = emulated.emulator
    em.early_400 = 3
    out = driver.create("proxmox_vm", vm_inputs(emulated))
    statuses = [r for r in em.requests if r[1].endswith("/status") and "/tasks/" in r[1]]
    assert len(statuses) >= 3 * 4  # clone, config, resize, start: each answered 400 three times first
    no_orphans(emulated, out)


def test_template_and_node_errors(driver, emulated):
    with pytest.raises(NotFound, match="template 'nope' does not exist.*9000 \\(debian-12-cloud\\)"):
        driver.create("proxmox_vm", vm_inputs(emulated, template="nope"))
    with pytest.raises(InvalidInput, match="node 'elsewhere' is not in the cluster"):
        driver.create("proxmox_vm", vm_inputs(emulated, node="elsewhere"))
    with pytest.raises(InvalidInput, match="disk of template '9001' has 4 GiB"):
        driver.create("proxmox_vm", vm_inputs(emulated, template="9001", diskGiB=2))
    no_orphans(emulated)


def test_the_token_secret_never_shows(emulated, tmp_path):
    em = emulated.emulator
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("0badc0de-0000-4000-8000-000000000000\n")
    inputs = vm_inputs(emulated, api={**emulated.api, "tokenSecretFile": str(wrong)})
    env = {**os.environ, "FEDIVERSITY_PROVIDERS_DEBUG": "1"}
    run = [sys.executable, "-m", "fediversity_providers", "create", "--type", "proxmox_vm", "--stateful"]
    refused = subprocess.run([*run, "--inputs-json", json.dumps(inputs)], capture_output=True, text=True,
                             timeout=60, env=env)
    assert refused.returncode == 1 and "access denied" in refused.stderr and "HTTP 401" in refused.stderr
    assert "0badc0de" not in refused.stderr
    good = subprocess.run([*run, "--inputs-json", json.dumps(vm_inputs(emulated))], capture_output=True,
                          text=True, timeout=60, env=env)
    assert good.returncode == 0, good.stderr
    assert em.secret not in good.stdout + good.stderr + json.dumps(vm_inputs(emulated))
    with InProcessDriver() as d:
        with pytest.raises(AccessDenied) as caught:
            d.create("proxmox_vm", inputs)
    assert "0badc0de" not in str(caught.value)
    missing = vm_inputs(emulated, api={**emulated.api, "tokenSecretFile": str(tmp_path / "absent")})
    with InProcessDriver() as d, pytest.raises(InvalidInput, match="api.tokenSecretFile: cannot (read|open)"):
        d.create("proxmox_vm", missing)
    no_orphans(emulated, json.loads(good.stdout))


def test_an_unreachable_cluster(driver, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("x" * 36)
    api = {"url": "http://127.0.0.1:9", "tokenId": "a@pve!b", "tokenSecretFile": str(secret)}
    with pytest.raises(Transient, match="unreachable: .*cannot reach http://127.0.0.1:9/api2/json"):
        driver.create("proxmox_vm", {"name": "x", "template": "9000", "api": api})


def test_the_emulator_refuses_what_the_schema_refuses(pve_emulator):
    from fediversity_providers.providers.proxmox_vm.client import PveClient

    client = PveClient(pve_emulator.url, pve_emulator.token_id, pve_emulator.secret)
    with pytest.raises(InvalidInput, match="unknown parameter 'bogus'"):
        client.post("/nodes/pve/qemu/9000/clone", newid=100, bogus=1)
    with pytest.raises(InvalidInput, match="required parameter 'newid' missing"):
        client.post("/nodes/pve/qemu/9000/clone", name="x")
    with pytest.raises(InvalidInput, match="not URL-encoded"):
        client.post("/nodes/pve/qemu/9000/config", sshkeys="ssh-ed25519 AAAA+x")
    with pytest.raises(InvalidInput, match="not one of"):
        client.get("/cluster/resources", type="vms")
    with pytest.raises(InvalidInput, match="net0=.*unknown key 'bridgee'"):
        client.post("/nodes/pve/qemu/9000/config", net0="virtio=BC:24:11:00:00:01,bridgee=vmbr0")
    with pytest.raises(InvalidInput, match="size='20 GB': does not match"):
        client.put("/nodes/pve/qemu/9000/resize", disk="scsi0", size="20 GB")
    with pytest.raises(InvalidInput, match="not an ipconfig"):
        client.post("/nodes/pve/qemu/9000/config", ipconfig0="ip=10.0.0.5")
    assert len(pve_emulator.violations) == 7
    pve_emulator.violations.clear()  # refused on purpose
    # The emulator's own answers are checked too (against "returns").
    problems = pve_emulator.schema.check_answer("GET", "/nodes/pve/qemu/100/status/current",
                                                {"status": "paused", "vmid": "100"})
    assert any("data.ha is missing" in p for p in problems)
    assert any("data.vmid is str, not integer" in p for p in problems)
    assert any("data.status = 'paused' is not one of" in p for p in problems)


def test_cold_start_imports_no_backend():
    code = ("import sys, fediversity_providers.providers.proxmox_vm as p; "
            "print(sorted(m for m in sys.modules if m.startswith(('fediversity_providers.providers.proxmox_vm.',"
            " 'filelock', 'urllib.request', 'ssl', 'http.client'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout


def test_tls_verification(driver, tmp_path):
    from fediversity_providers.providers.proxmox_vm.testing import PveEmulator

    with PveEmulator(tls_dir=tmp_path / "tls") as em:
        secret = tmp_path / "secret"
        secret.write_text(em.secret)
        api = {"url": em.url, "tokenId": em.token_id, "tokenSecretFile": str(secret)}
        inputs = {"name": "tls1", "template": "9000", "agentTimeoutSeconds": 10, "api": api}
        with pytest.raises(AccessDenied, match="api.caFile: .*TLS certificate was refused"):
            driver.create("proxmox_vm", inputs)
        assert em.our_vms() == {}
        out = driver.create("proxmox_vm", {**inputs, "api": {**api, "caFile": str(em.ca_file)}})
        assert out["status"] == "running" and em.url.startswith("https://")
        unverified = {**inputs, "api": {**api, "verifyTls": False}}
        assert driver.read("proxmox_vm", unverified, out) == out
        driver.delete("proxmox_vm", unverified, out)
        assert em.our_vms() == {} and not em.violations


def test_renaming_moves_the_marker(driver, emulated):
    inputs = vm_inputs(emulated)
    out = driver.create("proxmox_vm", inputs)
    emulated.emulator.vms[out["vmid"]]["config"]["tags"] += ";keep-me"
    renamed = {**inputs, "name": inputs["name"] + "-new"}
    after = driver.update("proxmox_vm", inputs, out, renamed)
    assert after["vmid"] == out["vmid"] and after["name"] == renamed["name"]
    tags = emulated.emulator.vms[out["vmid"]]["config"]["tags"].split(";")
    assert sorted(tags) == sorted(["keep-me", f"fdp-{__import__('hashlib').sha256(renamed['name'].encode()).hexdigest()[:12]}"])
    assert driver.read("proxmox_vm", renamed, after) == after
    with pytest.raises(NotFound, match="does not carry the marker"):
        driver.read("proxmox_vm", inputs, out)
    driver.delete("proxmox_vm", renamed, after)
    no_orphans(emulated)


def test_concurrent_creates_race_for_vmids(emulated):
    from concurrent.futures import ThreadPoolExecutor

    def create(i):
        with InProcessDriver() as d:
            return d.create("proxmox_vm", vm_inputs(emulated))

    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(create, range(4)))
    assert len({o["vmid"] for o in outputs}) == 4 and len({o["macAddress"] for o in outputs}) == 4
    no_orphans(emulated, *outputs)
