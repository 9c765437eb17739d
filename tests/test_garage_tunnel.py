"""garage_bucket and garage_cluster reach the admin API through an SSH tunnel.

The Garage admin emulator (``--background``) runs inside a real SSH test
host's own network namespace, on that namespace's 127.0.0.1: from the
deployer's namespace nothing reaches it but the tunnel, so every success
below went through the SSH connection's ``direct-tcpip`` channel.  sshd's log
(``Accepted publickey``) counts the SSH connections; ``ss`` inside the
namespace shows that none is left open after a request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fediversity_providers import AccessDenied, InvalidInput, Transient, Unreachable
from fediversity_providers.providers.garage_bucket.testing import ADMIN_PORT, InNamespace
from fediversity_providers.testing import InProcessDriver

T = "garage_bucket"
PORT = ADMIN_PORT
#: What a request may take past FEDIVERSITY_PROVIDERS_TIMEOUT (the README's margin).
MARGIN = 3.0


@pytest.fixture
def host(ssh_hosts):
    (h,) = ssh_hosts(1)
    return h


@pytest.fixture
def garage(host, tmp_path):
    g = InNamespace(host, tmp_path, "fediversity_providers.providers.garage_bucket.testing", "garage",
                    "--admin-port", str(PORT))
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture
def driver():
    with InProcessDriver() as d:
        yield d


def inputs(host, garage, alias: str, **extra) -> dict:
    base = {"adminEndpoint": f"http://127.0.0.1:{PORT}", "adminTokenFile": str(garage.token_file),
            "adminApiVersion": "auto", "s3Endpoint": garage.vars["FVP_GARAGE_S3"], "globalAlias": alias,
            "ssh": host.ssh_input(connectTimeout=5), "retryTimeout": 5}
    base.update(extra)
    return base


def logins(host) -> int:
    return host.sshd_log.read_text().count("Accepted publickey")


def no_ssh_left(garage) -> None:
    """Every SSH connection a request opened is closed (sshd may take a moment to see the close)."""
    give_up = time.monotonic() + 5
    while garage.ssh_sessions() and time.monotonic() < give_up:
        time.sleep(0.05)
    assert garage.ssh_sessions() == 0


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fediversity_providers", *args], capture_output=True, text=True,
                          timeout=120, env=env)


# -- the lifecycle through the tunnel ------------------------------------------------------------
def test_create_read_delete_through_the_tunnel(host, garage, driver, monkeypatch):
    from fediversity_providers.providers.garage_bucket import admin

    # Only the tunnel reaches the emulator: the same endpoint, asked directly, is not it.
    direct = inputs(host, garage, "media", ssh=None, retryTimeout=0)
    with pytest.raises((Unreachable, AccessDenied, Transient)):
        driver.create(T, direct)
    assert garage.buckets() == []

    sent = []
    once = admin.Transport.once
    monkeypatch.setattr(admin.Transport, "once", lambda self, *a: sent.append(a[:2]) or once(self, *a))
    before = logins(host)
    spec = inputs(host, garage, "media", keys=[{"name": "app", "read": True, "write": True}],
                  quotas={"maxObjects": 100})
    out = driver.create(T, spec)
    assert [b["globalAliases"] for b in garage.buckets()] == [["media"]]
    assert out["bucketId"] == garage.buckets()[0]["id"]
    assert out["quotas"]["maxObjects"] == 100 and out["keys"]["app"]["secretAccessKey"]
    assert [k["id"] for k in garage.keys()] == [out["keys"]["app"]["accessKeyId"]]
    # One SSH connection per request, each closed at its end.
    assert logins(host) - before == len(sent) > 3
    no_ssh_left(garage)

    assert driver.read(T, spec, out) == out
    driver.delete(T, spec, out)
    assert garage.buckets() == [] and garage.keys() == []
    assert logins(host) - before == len(sent)
    no_ssh_left(garage)


def test_garage_1x_through_the_tunnel(host, tmp_path, driver):
    g = InNamespace(host, tmp_path, "fediversity_providers.providers.garage_bucket.testing", "garage",
                    "--admin-port", str(PORT), "--garage-version", "1")
    try:
        spec = inputs(host, g, "old-media", adminApiVersion="v1")
        out = driver.create(T, spec)
        assert g.get("/v1/bucket?list") [0]["globalAliases"] == ["old-media"]
        driver.delete(T, spec, out)
        assert g.get("/v1/bucket?list") == []
    finally:
        g.stop()


# -- refusals --------------------------------------------------------------------------------------
def test_a_wrong_host_key_is_refused_before_any_request(host, garage, driver, ssh_hosts):
    (other,) = ssh_hosts(1)
    before = logins(host)
    with pytest.raises(AccessDenied) as caught:
        driver.create(T, inputs(host, garage, "media", ssh=host.ssh_input(hostPublicKey=other.host_public_key)))
    error = str(caught.value)
    assert "access denied: ssh.hostPublicKey: host key mismatch" in error and "nothing was changed" in error
    assert garage.token not in error
    # Refused before logging in, so before any HTTP byte: nothing was created.
    assert logins(host) == before
    assert garage.buckets() == [] and garage.keys() == []
    no_ssh_left(garage)


def test_an_unreachable_ssh_host_names_the_field(host, garage, driver):
    host.make_unreachable()
    try:
        started = time.monotonic()
        with pytest.raises(Unreachable) as caught:
            driver.create(T, inputs(host, garage, "media", ssh=host.ssh_input(connectTimeout=1), retryTimeout=0))
        assert time.monotonic() - started < 1 + MARGIN
    finally:
        host.make_reachable()
    assert "unreachable: ssh.host: no answer from " + host.address in str(caught.value)
    assert "nothing was changed" in str(caught.value)
    assert garage.buckets() == []


def test_a_stopped_sshd_and_a_refused_key_name_their_fields(host, garage, driver, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(AccessDenied) as caught:
        driver.create(T, inputs(host, garage, "media", ssh=host.ssh_input(privateKeyFile=str(stranger))))
    assert f"ssh.privateKeyFile: {host.address}:22 refused the login of user 'root' with key file {stranger}" \
        in str(caught.value)
    assert stranger.read_text().splitlines()[1] not in str(caught.value)
    assert garage.buckets() == []
    host.stop_sshd()  # (and every process of the namespace: the emulator too)
    try:
        with pytest.raises(Transient) as caught:
            driver.create(T, inputs(host, garage, "media", retryTimeout=0))
    finally:
        host.start_sshd()
    assert "ssh.port: " in str(caught.value) and "refused the connection" in str(caught.value)


def test_bad_ssh_inputs_are_refused_before_connecting(host, garage, driver):
    before = logins(host)
    with pytest.raises(InvalidInput) as caught:
        driver.create(T, inputs(host, garage, "media", adminEndpoint="https://127.0.0.1:3903"))
    assert "invalid input: adminEndpoint: with ssh" in str(caught.value)
    with pytest.raises(InvalidInput) as caught:
        driver.create(T, inputs(host, garage, "media", ssh=host.ssh_input(hostPublicKey="ssh-ed25519 AAAA")))
    assert "ssh.hostPublicKey" in str(caught.value)
    with pytest.raises(InvalidInput) as caught:
        driver.create(T, inputs(host, garage, "media", ssh=host.ssh_input(host="-oProxyCommand=x")))
    assert "ssh.host" in str(caught.value)
    assert logins(host) == before


def test_an_endpoint_the_machine_cannot_reach_is_said_so(host, garage, driver):
    with pytest.raises(Unreachable) as caught:
        driver.create(T, inputs(host, garage, "media", adminEndpoint="http://127.0.0.1:3999", retryTimeout=0))
    message = str(caught.value)
    assert "through SSH to" in message and "could not connect to 127.0.0.1:3999" in message, message
    no_ssh_left(garage)


# -- over the wire: no token anywhere ---------------------------------------------------------------
def test_the_token_appears_nowhere(host, garage, ssh_hosts, tmp_path):
    (other,) = ssh_hosts(1)
    env = {**os.environ, "FEDIVERSITY_PROVIDERS_DEBUG": "1"}
    spec = inputs(host, garage, "media")
    made = cli("create", "--type", T, "--stateful", "--inputs-json", json.dumps(spec), env=env)
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    failures = [
        cli("create", "--type", T, "--stateful", "--inputs-json",
            json.dumps(inputs(host, garage, "other", ssh=host.ssh_input(hostPublicKey=other.host_public_key))),
            env=env),
        cli("create", "--type", T, "--stateful", "--inputs-json",
            json.dumps(inputs(host, garage, "other", adminEndpoint="http://127.0.0.1:3999", retryTimeout=0)),
            env=env),
    ]
    for done in failures:
        assert done.returncode == 1 and done.stderr.startswith("fediversity-provider create: "), done.stderr
    assert "host key mismatch" in failures[0].stderr
    gone = cli("delete", "--type", T, "--inputs-json", json.dumps(spec), "--outputs-json", json.dumps(out), env=env)
    assert gone.returncode == 0, gone.stderr
    for done in (made, *failures, gone):
        assert garage.token not in done.stdout + done.stderr
    assert garage.buckets() == []


# -- deadlines ----------------------------------------------------------------------------------------
DRIP = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
print("up", flush=True)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 100000\\r\\n"
              b"Connection: close\\r\\n\\r\\n")
    try:
        while True:  # one byte of the body every half second: each read succeeds, the answer never ends
            c.sendall(b" "); time.sleep(0.5)
    except OSError:
        c.close()
"""


@pytest.fixture
def drip(host):
    """An answer that never ends, on 127.0.0.1:3904 inside the host's namespace."""
    server = subprocess.Popen(["ip", "netns", "exec", host.netns, sys.executable, "-c", DRIP, "3904"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout.readline().strip() == "up"
        yield "http://127.0.0.1:3904"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()


@pytest.mark.parametrize("where", ["drip-fed body", "silent sshd"])
def test_the_deadline_binds_through_the_tunnel(host, garage, drip, where):
    seconds = 4
    spec = inputs(host, garage, "media", adminEndpoint=drip, requestTimeout=60, retryTimeout=60,
                  ssh=host.ssh_input(connectTimeout=60))
    if where == "silent sshd":
        spec["adminEndpoint"] = f"http://127.0.0.1:{PORT}"
        host.hang()
    env = {**os.environ, "FEDIVERSITY_PROVIDERS_TIMEOUT": str(seconds)}
    started = time.monotonic()
    try:
        done = cli("create", "--type", T, "--stateful", "--inputs-json", json.dumps(spec), env=env)
    finally:
        took = time.monotonic() - started
        host.start_sshd()
    assert done.returncode == 1, done.stdout
    assert took < seconds + MARGIN, f"took {took:.1f}s: {done.stderr}"
    assert "Garage's admin API" in done.stderr or "ssh" in done.stderr, done.stderr
    assert garage.token not in done.stderr
    if where == "drip-fed body":  # (a stopped sshd takes every process of its namespace with it)
        assert garage.buckets() == []


# -- garage_cluster: the nodes' own endpoints through the same tunnel ----------------------------
def test_garage_cluster_through_the_tunnel(host, tmp_path, driver):
    c = InNamespace(host, tmp_path, "fediversity_providers.providers.garage_cluster.testing", "garage-cluster",
                    "--nodes", "3")
    try:
        v = c.vars
        nodes = [{"rpcAddress": v[f"FVP_GARAGE_RPC_{n}"], "adminEndpoint": v[f"FVP_GARAGE_ADMIN_{n}"],
                  "zone": f"zone-{n}", "capacity": 10**9} for n in (1, 2, 3)]
        assert all(n["adminEndpoint"].startswith("http://127.0.0.1:") for n in nodes)
        spec = {"adminEndpoint": v["FVP_GARAGE_ADMIN"], "adminTokenFile": str(c.token_file), "nodes": nodes,
                "ssh": host.ssh_input(connectTimeout=5), "retryTimeout": 10}
        out = driver.create("garage_cluster", spec)
        assert out["layoutVersion"] == 1
        assert driver.read("garage_cluster", spec, out)["layoutVersion"] == 1
        with pytest.raises(InvalidInput) as caught:
            driver.create("garage_cluster", {**spec, "nodes": [{**nodes[0], "adminEndpoint": "https://x:1"},
                                                               *nodes[1:]]})
        assert "invalid input: nodes[0].adminEndpoint: with ssh" in str(caught.value)
    finally:
        c.stop()


# -- cold start -----------------------------------------------------------------------------------
def test_paramiko_loads_only_when_ssh_is_given(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    code = textwrap.dedent("""
        import json, sys
        from fediversity_providers.testing import InProcessDriver
        inputs = json.loads(sys.argv[1])
        with InProcessDriver() as d:
            try:
                d.create("garage_bucket", inputs)
            except Exception as error:
                print(type(error).__name__, file=sys.stderr)
        print("paramiko" in sys.modules)
    """)
    base = {"adminEndpoint": "http://127.0.0.1:9", "adminTokenFile": str(token), "s3Endpoint": "http://127.0.0.1:9",
            "globalAlias": "media", "retryTimeout": 0}
    ssh = {"host": "127.0.0.1", "port": 9, "connectTimeout": 1,
           "hostPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}
    for inputs, loaded in ((base, "False"), ({**base, "ssh": None}, "False"), ({**base, "ssh": ssh}, "True")):
        done = subprocess.run([sys.executable, "-c", code, json.dumps(inputs)], capture_output=True, text=True,
                              timeout=60)
        assert done.stdout.strip() == loaded, done.stderr
        assert done.stderr.strip() in ("Unreachable", "Transient"), done.stderr


def test_a_node_named_by_its_machine_is_asked_its_id_through_its_own_machine(ssh_hosts, tmp_path, driver):
    """A node's adminEndpoint (127.0.0.1 as *that* node sees it) goes through an SSH connection to that node."""
    first, other = ssh_hosts(2)
    c = InNamespace(first, tmp_path, "fediversity_providers.providers.garage_cluster.testing", "garage-cluster",
                    "--nodes", "3")
    try:
        v = c.vars
        nodes = [{"rpcAddress": v[f"FVP_GARAGE_RPC_{n}"], "adminEndpoint": v[f"FVP_GARAGE_ADMIN_{n}"],
                  "zone": f"zone-{n}", "capacity": 10**9} for n in (1, 2)]
        # The third node is named by its machine (existing_vm's ssh output, whole): a machine the
        # cluster does not know, whose own admin API is on its own 127.0.0.1.
        nodes.append({"ssh": other.ssh_input(connectTimeout=5), "adminEndpoint": v["FVP_GARAGE_ADMIN_3"],
                      "zone": "zone-3", "capacity": 10**9})
        spec = {"adminEndpoint": v["FVP_GARAGE_ADMIN"], "adminTokenFile": str(c.token_file), "nodes": nodes,
                "ssh": first.ssh_input(connectTimeout=5), "retryTimeout": 1}
        before_first, before_other = logins(first), logins(other)
        with pytest.raises(Unreachable) as caught:
            driver.create("garage_cluster", spec)
        message = str(caught.value)
        assert "nodes[2].adminEndpoint" in message and "nothing was staged" in message
        assert logins(other) > before_other, "the node's own machine was asked, through its own SSH connection"
        assert logins(first) > before_first
        layout = json.loads(c.python("""
            import sys, urllib.request
            r = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
            print(urllib.request.urlopen(r, timeout=10).read().decode())
        """, v["FVP_GARAGE_ADMIN"] + "/v2/GetClusterLayout", c.token))
        assert layout["stagedRoleChanges"] == [] and layout["version"] == 0
    finally:
        c.stop()


def test_which_tunnel_a_node_id_is_asked_through():
    from types import SimpleNamespace

    from fediversity_providers.providers.garage_cluster import plan
    from fediversity_providers.providers.garage_cluster.provider import _tunnel_to
    from fediversity_providers.providers.garage_bucket.tunnel import Tunnel

    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    cluster_tunnel = object()
    api = SimpleNamespace(c=SimpleNamespace(t=SimpleNamespace(tunnel=cluster_tunnel)))
    direct = SimpleNamespace(c=SimpleNamespace(t=SimpleNamespace(tunnel=None)))
    ctx = SimpleNamespace(add_secret=lambda s: None)
    whole = plan.Node(0, {"ssh": {"host": "192.0.2.22", "hostPublicKey": key}, "zone": "b", "capacity": 1,
                          "adminEndpoint": "http://127.0.0.1:3903"})
    own = _tunnel_to(whole, api, ctx)
    assert isinstance(own, Tunnel) and own.ssh["host"] == "192.0.2.22"
    assert _tunnel_to(whole, direct, ctx) is None, "without ssh, node endpoints are reached directly"
    by_address = plan.Node(1, {"rpcAddress": "192.0.2.23:3901", "zone": "c", "capacity": 1,
                               "adminEndpoint": "http://192.0.2.23:3903"})
    assert _tunnel_to(by_address, api, ctx) is cluster_tunnel
    with pytest.raises(InvalidInput, match="nodes\\[0\\].adminEndpoint"):
        _tunnel_to(plan.Node(0, {"ssh": {"host": "h", "hostPublicKey": key}, "zone": "b", "capacity": 1,
                                 "adminEndpoint": "https://h:3903"}), api, ctx)


@pytest.mark.parametrize("endpoint", ["http://192.0.2.7:3903", "http://garage2.example:3903", "http://[2001:db8::2]:3903"])
def test_through_the_tunnel_only_the_machines_own_loopback(driver, tmp_path, endpoint):
    """Beyond the SSH machine's loopback, the token would cross the network in clear from there."""
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    spec = {"adminEndpoint": endpoint, "adminTokenFile": str(token), "s3Endpoint": "http://127.0.0.1:1",
            "globalAlias": "media", "ssh": {"host": "192.0.2.1", "hostPublicKey": key}}
    with pytest.raises(InvalidInput) as caught:
        driver.create(T, spec)
    assert "must be on the SSH machine's own loopback" in str(caught.value) and "nothing was changed" in str(caught.value)
    nodes = [{"rpcAddress": "192.0.2.2:3901", "adminEndpoint": endpoint, "zone": "a", "capacity": 1}]
    with pytest.raises(InvalidInput, match="nodes\\[0\\].adminEndpoint.*own loopback"):
        driver.create("garage_cluster", {"adminEndpoint": "http://127.0.0.1:3903", "adminTokenFile": str(token),
                                         "replicationFactor": 1, "nodes": nodes,
                                         "ssh": {"host": "192.0.2.1", "hostPublicKey": key}})


@pytest.mark.parametrize("field, value", [("connectTimeout", "x"), ("privateKeyFile", 5), ("port", 0),
                                          ("user", "root\nProxyCommand x"), ("extra", 1)])
def test_a_nodes_machine_is_checked_like_any_ssh_input(driver, tmp_path, field, value):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    machine = {"host": "192.0.2.2", "hostPublicKey": key, field: value}
    nodes = [{"ssh": machine, "adminEndpoint": "http://127.0.0.1:3903", "zone": "a", "capacity": 1}]
    with pytest.raises(InvalidInput) as caught:
        driver.create("garage_cluster", {"adminEndpoint": "http://127.0.0.1:3903", "adminTokenFile": str(token),
                                         "replicationFactor": 1, "nodes": nodes,
                                         "ssh": {"host": "192.0.2.1", "hostPublicKey": key}})
    assert "nodes[0].ssh" in str(caught.value) or "inputProperties.nodes.0.ssh" in str(caught.value), caught.value
    assert "internal error" not in str(caught.value)
