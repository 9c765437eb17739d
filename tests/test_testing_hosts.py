"""The SSH test hosts of the test kit, against real sshd, namespaces and mounts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from fediversity_providers.testing import hosts as hostmod
from fediversity_providers.testing import hostslots


def _connect_error(host, timeout=2.0):
    start = time.monotonic()
    try:
        with socket.create_connection((host.address, host.port), timeout=timeout) as s:
            s.settimeout(timeout)
            banner = s.recv(64)
            return ("banner", banner, time.monotonic() - start)
    except OSError as exc:
        return (type(exc).__name__, exc, time.monotonic() - start)


def _running(pid) -> bool:
    """Whether ``pid`` is alive (a zombie waiting for init to reap it is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _netns_names():
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())


def test_two_hosts_with_own_roots(ssh_hosts):
    a, b = ssh_hosts(2, own_root=True)
    assert a.address != b.address and a.address.startswith("127.77.0.")
    assert a.host_public_key.startswith("ssh-ed25519 AAAA") and len(a.host_public_key.split()) == 2
    assert a.run("hostname").stdout.strip() == a.name
    assert b.run("hostname").stdout.strip() == b.name
    assert a.run("id -un").stdout.strip() == "root"
    # Own /etc, /root/.ssh, /run, /nix; inspectable from outside.
    a.run("echo from-a > /etc/marker && mkdir -p /nix/store/x /run/thing && touch /run/thing/f")
    assert a.path("/etc/marker").read_text() == "from-a\n"
    assert a.path("/etc/marker") == a.root / "etc/marker"
    assert a.path("/nix/store/x").is_dir() and not b.path("/nix/store/x").exists()
    assert a.path("/run/thing/f").exists()
    assert b.run("cat /etc/marker", check=False).returncode != 0
    assert not os.path.exists("/etc/marker")
    assert b.run("ls /nix").stdout.split() == []
    # The host's own sshd config and keys are where a machine keeps them.
    assert a.path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().startswith(a.host_public_key)
    assert a.path("/root/.ssh/authorized_keys").exists()
    # write_file goes through the host's own mount view.
    a.write_file("/etc/nix/nix.conf", "sandbox = false\n")
    assert a.run("cat /etc/nix/nix.conf").stdout == "sandbox = false\n"
    # The host sees the connection coming from the deployer's address.
    assert a.run("echo $SSH_CLIENT").stdout.split()[0] == hostmod.DEPLOYER_ADDRESS


def test_host_without_own_root_and_ssh_input(ssh_hosts):
    (h,) = ssh_hosts(1)
    assert h.root is None
    assert h.run("hostname").stdout.strip() == h.name
    assert h.path("/etc/os-release") == Path("/etc/os-release")
    inp = h.ssh_input(connectTimeout=3)
    assert inp == {
        "host": h.address, "port": 22, "user": "root", "hostPublicKey": h.host_public_key,
        "privateKeyFile": str(h.private_key_file), "connectTimeout": 3,
    }
    assert oct(os.stat(h.private_key_file).st_mode & 0o777) == "0o600"
    with pytest.raises(subprocess.CalledProcessError):
        h.run("exit 3")
    assert h.run("exit 3", check=False).returncode == 3


def test_faults_and_recovery(ssh_hosts):
    (h,) = ssh_hosts(1, own_root=True)
    h.stop_sshd()
    kind, _, took = _connect_error(h)
    assert kind == "ConnectionRefusedError" and took < 1
    h.start_sshd()
    assert _connect_error(h)[1].startswith(b"SSH-2.0-")

    h.hang()
    kind, _, took = _connect_error(h, timeout=1)
    assert kind == "TimeoutError" and took >= 1  # TCP accepted, no banner
    h.start_sshd()
    assert _connect_error(h)[1].startswith(b"SSH-2.0-")

    h.make_unreachable()
    kind, _, took = _connect_error(h, timeout=1)
    assert kind == "TimeoutError"
    h.make_reachable()
    assert h.run("true").returncode == 0

    old = h.host_public_key
    new = h.rotate_host_key()
    assert new != old and h.host_public_key == new
    assert h.run("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.startswith(new)
    offered = subprocess.run(["ssh-keyscan", "-t", "ed25519", h.address], capture_output=True, text=True).stdout
    assert new.split()[1] in offered


def test_teardown_removes_everything_even_when_a_test_fails(tmp_path):
    hostmod.require_ssh_hosts()
    factory = hostmod.SSHHostFactory()
    with pytest.raises(ZeroDivisionError):
        with factory:
            hosts = factory(2, own_root=True)
            hosts[0].run("sleep 60 </dev/null >/dev/null 2>&1 &")  # a session left behind
            hosts[1].make_unreachable()
            pids = [h._sshd.pid for h in hosts] + [h._holder.pid for h in hosts]
            names = [h.netns for h in hosts]
            dirs = [h.dir for h in hosts]
            1 / 0
    assert not set(names) & _netns_names()
    for pid in pids:
        assert not _running(pid)
    for d in dirs:
        assert not d.exists()
    routes = subprocess.run(["ip", "route", "show", "table", "local"], capture_output=True, text=True).stdout
    for h in hosts:
        assert f"{h.address} " not in routes
    registry = json.loads((hostslots.STATE_DIR / "registry.json").read_text())
    assert not {str(h.slot) for h in hosts} & set(registry)


def test_stale_slots_of_dead_sessions_are_reclaimed(tmp_path):
    """A session killed hard leaves its hosts; the next allocation removes them."""
    hostmod.require_ssh_hosts()
    script = (
        "import os, sys, time\n"
        "from fediversity_providers.testing.hosts import SSHHostFactory\n"
        f"f = SSHHostFactory({str(tmp_path)!r})\n"
        "(h,) = f(1)\n"
        "print(h.slot, h.netns, h._sshd.pid, flush=True)\n"
        "os._exit(0)\n"  # dies without tearing down
    )
    out = subprocess.run([os.sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    slot, netns, sshd_pid = out.split()
    assert netns in _netns_names()
    with hostmod.SSHHostFactory() as factory:
        (new,) = factory(1)
        assert not _running(sshd_pid)
        assert netns not in _netns_names() or new.netns == netns
        assert new.run("true").returncode == 0
        registry = json.loads((hostslots.STATE_DIR / "registry.json").read_text())
        entry = registry.get(slot)
        assert entry is None or entry["owner"]["pid"] == os.getpid()


def test_concurrent_sessions_get_distinct_slots():
    """Two processes allocating at once never get the same address."""
    hostmod.require_ssh_hosts()
    script = (
        "from fediversity_providers.testing.hosts import SSHHostFactory\n"
        "with SSHHostFactory() as f:\n"
        "    hs = f(3)\n"
        "    print(' '.join(h.address for h in hs), flush=True)\n"
        "    assert all(h.run('true').returncode == 0 for h in hs)\n"
        "    import sys; sys.stdin.read()\n"  # hold the hosts until told to stop
    )
    procs = [
        subprocess.Popen([os.sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    addresses = [p.stdout.readline().split() for p in procs]
    for p in procs:
        p.stdin.close()
        assert p.wait(30) == 0
        p.stdout.close()
    flat = [a for group in addresses for a in group]
    assert len(flat) == 9 and len(set(flat)) == 9
