"""existing_vm against real SSH test hosts: facts, every error, concurrency, cold start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from fediversity_providers import AccessDenied, Conflict, InvalidInput, Transient, Unreachable
from fediversity_providers.testing import InProcessDriver, SubprocessDriver, conformance

T = "existing_vm"
MARGIN = 2.0  # seconds beyond connectTimeout an error may take (process, handshake, scheduling)


@pytest.fixture
def driver():
    with InProcessDriver() as d:
        yield d


def fingerprint_of(public_key_line: str) -> str:
    done = subprocess.run(["ssh-keygen", "-lf", "-"], input=public_key_line, capture_output=True, text=True, check=True)
    return done.stdout.split()[1]


def timed(fn, *args, **kwargs):
    start = time.monotonic()
    try:
        fn(*args, **kwargs)
    except Exception as error:
        return error, time.monotonic() - start
    raise AssertionError("no error raised")


def accepted_logins(host) -> int:
    return host.sshd_log.read_text().count("Accepted publickey")


# -- facts -------------------------------------------------------------------------------


def test_facts_match_what_each_host_reports(driver, ssh_hosts):
    a, b = ssh_hosts(2, own_root=True)
    for host in (a, b):
        out = driver.create(T, {"ssh": host.ssh_input()})
        shown = host.run(
            "uname -n; uname -m; uname -r; nproc; . /etc/os-release; echo $ID $VERSION_ID; nix --version;"
            " awk '/MemTotal/ {print $2}' /proc/meminfo"
        ).stdout.splitlines()
        assert out["hostname"] == host.name == shown[0]
        assert out["system"] == f"{shown[1]}-linux"
        assert out["kernel"] == shown[2]
        assert out["cpus"] == int(shown[3])
        assert [out["os"]["id"], out["os"]["versionId"]] == shown[4].split()
        assert out["nixVersion"] == shown[5].split()[-1]
        assert out["memoryBytes"] == int(shown[6]) * 1024
        assert out["nixos"] is False
        assert out["ssh"] == host.ssh_input()
    # A host that says it is NixOS is seen as one.
    a.run("touch /etc/NIXOS")
    assert driver.create(T, {"ssh": a.ssh_input()})["nixos"] is True


def test_comment_on_the_host_key_is_dropped_and_facts_are_reread(driver, ssh_hosts):
    (h,) = ssh_hosts(1, own_root=True)
    inputs = {"ssh": h.ssh_input(hostPublicKey=h.host_public_key + " root@somewhere")}
    out = driver.create(T, inputs)
    assert out["ssh"]["hostPublicKey"] == h.host_public_key
    h.run("hostname renamed")
    assert driver.read(T, inputs, out)["hostname"] == "renamed"


def test_expect(driver, ssh_hosts):
    (h,) = ssh_hosts(1, own_root=True)
    machine = h.run("uname -m").stdout.strip()
    ok = {"ssh": h.ssh_input(), "expect": {"system": f"{machine}-linux", "nixos": False, "hostname": h.name}}
    out = driver.create(T, ok)
    for field, wrong in (("system", "riscv64-linux"), ("nixos", True), ("hostname", "elsewhere")):
        with pytest.raises(Conflict) as caught:
            driver.create(T, {"ssh": h.ssh_input(), "expect": {field: wrong}})
        assert f"expect.{field}" in str(caught.value) and json.dumps(wrong) in str(caught.value)  # JSON values, as NixOps4 users write them
    # read checks too
    with pytest.raises(Conflict):
        driver.read(T, {"ssh": h.ssh_input(), "expect": {"nixos": True}}, out)


# -- errors ------------------------------------------------------------------------------


def test_host_key_mismatch_shows_both_fingerprints_and_runs_nothing(driver, ssh_hosts):
    a, b = ssh_hosts(2, own_root=True)
    before = accepted_logins(a)
    error, took = timed(driver.create, T, {"ssh": a.ssh_input(hostPublicKey=b.host_public_key, connectTimeout=3),
                                           "retryTimeout": 30})
    assert isinstance(error, AccessDenied), error
    text = str(error)
    assert "host key mismatch" in text and "ssh.hostPublicKey" in text
    assert fingerprint_of(b.host_public_key) in text  # expected
    assert fingerprint_of(a.host_public_key) in text  # offered
    assert took < 3 + MARGIN  # never retried
    time.sleep(0.2)
    assert accepted_logins(a) == before  # no login, so no command ran


def test_rotated_host_key_is_refused_until_the_input_changes(driver, ssh_hosts):
    (h,) = ssh_hosts(1, own_root=True)
    old = h.host_public_key
    h.rotate_host_key()
    with pytest.raises(AccessDenied) as caught:
        driver.create(T, {"ssh": h.ssh_input(hostPublicKey=old)})
    assert fingerprint_of(old) in str(caught.value) and fingerprint_of(h.host_public_key) in str(caught.value)
    assert driver.create(T, {"ssh": h.ssh_input()})["ssh"]["hostPublicKey"] == h.host_public_key


def test_host_key_of_another_type_is_a_mismatch(driver, ssh_hosts, tmp_path):
    (h,) = ssh_hosts(1)
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(tmp_path / "k")], check=True)
    other = (tmp_path / "k.pub").read_text().split()
    with pytest.raises(AccessDenied) as caught:
        driver.create(T, {"ssh": h.ssh_input(hostPublicKey=f"{other[0]} {other[1]}")})
    assert "ecdsa-sha2-nistp256" in str(caught.value) and "ssh-ed25519" in str(caught.value)


@pytest.mark.parametrize(
    "key, says",
    [
        ("ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIG8zxYzm2Y9z3g02I4HAMDahQxCidapQmNIKurIdKQUM", "unknown host key type 'ssh-foo'"),
        ("ssh-ed25519 not*base64", "not valid base64"),
        ("ssh-ed25519", "is not an SSH public key line"),
        ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIG8zxYzm2Y9z3g02I4HAMDahQxCidapQmNIKurIdKQUM", "holds a 'ssh-ed25519' key"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8z", "malformed"),
    ],
)
def test_bad_host_public_key_is_invalid_input_before_connecting(driver, key, says):
    # An address nothing listens on: the check must come before any connection.
    with pytest.raises(InvalidInput) as caught:
        driver.create(T, {"ssh": {"host": "127.77.0.1", "port": 9, "hostPublicKey": key}})
    assert "ssh.hostPublicKey" in str(caught.value) and says in str(caught.value)


def test_connection_refused(driver, ssh_hosts):
    (h,) = ssh_hosts(1)
    h.stop_sshd()
    error, took = timed(driver.create, T, {"ssh": h.ssh_input(connectTimeout=2)})
    assert isinstance(error, Transient) and "refused the connection" in str(error), error
    assert took < 2 + MARGIN


def test_unreachable_times_out_within_connect_timeout(driver, ssh_hosts):
    (h,) = ssh_hosts(1)
    h.make_unreachable()
    error, took = timed(driver.create, T, {"ssh": h.ssh_input(connectTimeout=1)})
    assert isinstance(error, Unreachable) and "no answer" in str(error) and "within 1s" in str(error), error
    assert 1 <= took < 1 + MARGIN


def test_hang_without_banner_times_out_within_connect_timeout(driver, ssh_hosts):
    (h,) = ssh_hosts(1)
    h.hang()
    error, took = timed(driver.create, T, {"ssh": h.ssh_input(connectTimeout=1)})
    assert isinstance(error, Transient) and "no SSH banner" in str(error), error
    assert took < 1 + MARGIN


def test_authentication_refused_names_user_and_key_and_is_not_retried(driver, ssh_hosts, tmp_path):
    (h,) = ssh_hosts(1)
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    error, took = timed(driver.create, T, {"ssh": h.ssh_input(privateKeyFile=str(stranger)), "retryTimeout": 30})
    assert isinstance(error, AccessDenied), error
    assert "user 'root'" in str(error) and str(stranger) in str(error) and "ssh.privateKeyFile" in str(error)
    assert took < 5
    with pytest.raises(AccessDenied) as caught:
        driver.create(T, {"ssh": h.ssh_input(user="nobody")})
    assert "user 'nobody'" in str(caught.value)


def test_unusable_private_key_files(driver, ssh_hosts, tmp_path):
    (h,) = ssh_hosts(1)
    with pytest.raises(InvalidInput, match="cannot open .*missing.*No such file"):
        driver.create(T, {"ssh": h.ssh_input(privateKeyFile=str(tmp_path / "missing"))})
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "sesame", "-f", str(locked)], check=True)
    with pytest.raises(InvalidInput, match="passphrase-protected"):
        driver.create(T, {"ssh": h.ssh_input(privateKeyFile=str(locked))})


def test_private_key_contents_never_appear(ssh_hosts, tmp_path):
    (h,) = ssh_hosts(1)
    secret = h.private_key_file.read_text()
    body = [line for line in secret.splitlines() if "PRIVATE KEY" not in line]
    garbage = tmp_path / "garbage"
    garbage.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0\n-----END OPENSSH PRIVATE KEY-----\n")
    requests = [
        {"createResourceRequest": {"type": T, "isStateful": True, "inputProperties": {"ssh": h.ssh_input()}}},
        {"createResourceRequest": {"type": T, "isStateful": True,
                                   "inputProperties": {"ssh": h.ssh_input(privateKeyFile=str(garbage))}}},
    ]
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    secret += stranger.read_text()
    body += [line for line in stranger.read_text().splitlines() if "PRIVATE KEY" not in line]
    requests.append({"createResourceRequest": {"type": T, "isStateful": True,
                                               "inputProperties": {"ssh": h.ssh_input(privateKeyFile=str(stranger))}}})
    stdin = "".join(json.dumps(r) + "\n" for r in requests)
    done = subprocess.run([sys.executable, "-m", "fediversity_providers", "serve", "--debug"], input=stdin,
                          capture_output=True, text=True, timeout=60)
    responses = [json.loads(line) for line in done.stdout.splitlines()]
    assert "createResourceResponse" in responses[0]
    assert "errorResponse" in responses[1] and "errorResponse" in responses[2]
    assert "refused the login" in responses[2]["errorResponse"]["message"]
    everything = done.stdout + done.stderr
    for line in body + ["c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"]:
        assert line not in everything


def test_transient_failures_are_retried_until_retry_timeout(driver, ssh_hosts):
    (h,) = ssh_hosts(1)
    h.stop_sshd()
    error, took = timed(driver.create, T, {"ssh": h.ssh_input(connectTimeout=1), "retryTimeout": 2})
    assert isinstance(error, Transient) and "attempts" in str(error), error
    assert 2 <= took < 2 + 1 + MARGIN
    # The machine comes up while we retry: create succeeds.
    timer = threading.Timer(1.0, h.start_sshd)
    timer.start()
    try:
        out = driver.create(T, {"ssh": h.ssh_input(connectTimeout=1), "retryTimeout": 20})
    finally:
        timer.join()
    assert out["hostname"] == h.name


# -- lifecycle, processes, cold start ------------------------------------------------------


def test_conformance_over_the_wire(ssh_hosts):
    (h,) = ssh_hosts(1, own_root=True)
    inputs = {"ssh": h.ssh_input()}
    updated = {"ssh": h.ssh_input(connectTimeout=5), "expect": {"hostname": h.name}, "retryTimeout": 3}
    driver = SubprocessDriver()
    try:
        steps = conformance.check(driver, T, inputs, updated, delete_forgets=True)
    finally:
        assert driver.close() == 0
    assert "read after delete still observes it" in steps


def test_invalid_inputs_are_refused(driver, ssh_hosts):
    (h,) = ssh_hosts(1)
    assert conformance.check_invalid_inputs(driver, T, {"ssh": h.ssh_input()}, max_examples=30) > 0


def test_four_provider_processes_against_four_hosts_at_once(ssh_hosts):
    hosts = ssh_hosts(4)
    procs = [
        subprocess.Popen([sys.executable, "-m", "fediversity_providers", "create", "--type", T,
                          "--inputs-json", json.dumps({"ssh": h.ssh_input()})],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for h in hosts
    ]
    results = [p.communicate(timeout=60) for p in procs]
    for h, p, (out, err) in zip(hosts, procs, results):
        assert p.returncode == 0, err
        assert json.loads(out)["hostname"] == h.name


def test_serve_imports_fabric_only_when_an_existing_vm_request_arrives(ssh_hosts):
    (h,) = ssh_hosts(1)
    heavy = ("fabric", "paramiko", "invoke", "cryptography")

    def imported(stdin: str) -> tuple[set[str], str]:
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "fediversity_providers", "serve"],
                              input=stdin, capture_output=True, text=True, timeout=60)
        names = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
                 if line.startswith("import time:") and "|" in line}
        assert "fediversity_providers.core.server" in names  # the check sees our modules
        return names, done.stdout

    read_types = json.dumps({"readResourceRequest": {"resource": {"type": "nope", "inputProperties": {}}}}) + "\n"
    names, _ = imported(read_types)
    assert not [m for m in heavy if m in names]
    create = json.dumps({"createResourceRequest": {"type": T, "isStateful": False,
                                                   "inputProperties": {"ssh": h.ssh_input()}}}) + "\n"
    names, stdout = imported(create)
    assert "createResourceResponse" in stdout
    assert {"fabric", "paramiko"} <= names


def test_a_machine_that_stops_answering_mid_command_fails_within_connect_timeout(driver, ssh_hosts):
    (h,) = ssh_hosts(1, own_root=True)
    h.write_file("/usr/local/bin/nproc", "#!/bin/sh\nexec sleep 60\n", 0o755)  # facts gathering stalls
    assert h.run("command -v nproc").stdout.strip() == "/usr/local/bin/nproc"
    error, took = timed(driver.create, T, {"ssh": h.ssh_input(connectTimeout=1)})
    assert isinstance(error, Unreachable) and "stopped answering" in str(error), error
    assert took < 1 + MARGIN


def test_user_ssh_and_fabric_configuration_is_ignored(ssh_hosts, tmp_path):
    """Only the inputs count: not ~/.ssh/config, ~/.ssh/known_hosts, ~/.fabric.yaml or an agent."""
    a, b = ssh_hosts(2)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  User nobody\n  Port 2222\n  StrictHostKeyChecking no\n")
    (home / ".ssh" / "known_hosts").write_text(f"{a.address} {b.host_public_key}\n")  # a wrong key for a
    (home / ".fabric.yaml").write_text("user: nobody\nconnect_kwargs:\n  key_filename: [/nonexistent]\n")
    env = dict(os.environ, HOME=str(home), SSH_AUTH_SOCK=str(tmp_path / "no-agent"))
    ok = subprocess.run([sys.executable, "-m", "fediversity_providers", "create", "--type", T,
                         "--inputs-json", json.dumps({"ssh": a.ssh_input()})], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["hostname"] == a.name
    # and the known_hosts line for b's key does not make b's key acceptable for a
    bad = subprocess.run([sys.executable, "-m", "fediversity_providers", "create", "--type", T, "--inputs-json",
                          json.dumps({"ssh": a.ssh_input(hostPublicKey=b.host_public_key)})],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "host key mismatch" in bad.stderr
