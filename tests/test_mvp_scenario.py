"""The April MVP (nix-modules/examples/mvp/deployment.nix) applied for real, as NixOps4 applies it.

Four fake NixOS hosts stand in for the four VMs (each with its own root, its
own Nix store and its own network namespace): garage, mastodon, peertube and
pixelfed.  The Garage admin emulator runs inside the Garage host's own
namespace, on its 127.0.0.1, so garage_bucket reaches it only through the SSH
tunnel over the Garage VM's pinned connection (its ``ssh`` input is
existing_vm's ``ssh`` output), as in the example.

Every request is one runner process (``python -m fediversity_providers create
...``), as NixOps4 starts one provider process per resource operation, in the
order NixOps4's apply reaches the members (tests/test_nix_mvp.py checks that
order on the evaluated example): the VMs; the Garage node's configuration,
its three secrets uploaded as keys before activation; the buckets; the
service machines, each with its bucket's secret as the key
``/run/keys/<service>-s3``.  Every activation runs a hook that fails unless
its keys are in place, with the owner and mode the services need.

Then: no secret in any toplevel's closure, in nixos_config's outputs, on any
runner's stderr, or in any file of any host outside its keys' directory; and
a second apply of the same inputs (update requests with the previous inputs
and outputs) changes nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from fediversity_providers.providers.garage_bucket.testing import ADMIN_PORT, InNamespace

SERVICES = ("mastodon", "peertube", "pixelfed")
MACHINES = ("garage", *SERVICES)
WEB_ROOT_DOMAIN = ".web.example.org"
#: The service secrets files of the example other than the bucket's (deployment.nix's serviceKeys).
OWN_SECRETS = {"peertube": "peertube-secrets", "pixelfed": "pixelfed-env"}
GARAGE_KEYS = ("garage-rpc-secret", "garage-admin-token", "garage-metrics-token")
MARKER = "/var/lib/fake-nixos/hook-ran"


class Deployer:
    """The runner, one process per request, with every call's stderr kept for the leak check."""

    def __init__(self) -> None:
        self.stderr: list[str] = []
        # Debug logging on: the strictest test that no secret reaches stderr.
        self.env = {**os.environ, "FEDIVERSITY_PROVIDERS_DEBUG": "1"}

    def run(self, member: str, *args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "fediversity_providers", *args], capture_output=True,
                              text=True, timeout=120, env=self.env, stdin=subprocess.DEVNULL)
        self.stderr.append(done.stderr)
        assert done.returncode == 0, f"{member}: {args[0]} failed: {done.stderr}"
        return json.loads(done.stdout)

    def create(self, member: str, type_: str, inputs: dict) -> dict:
        return self.run(member, "create", "--type", type_, "--stateful", "--inputs-json", json.dumps(inputs))

    def update(self, member: str, type_: str, inputs: dict, outputs: dict) -> dict:
        # What NixOps4 sends: the resource's previous inputs and outputs, and the (same) new inputs.
        return self.run(member, "update", "--type", type_, "--inputs-json", json.dumps(inputs),
                        "--previous-inputs-json", json.dumps(inputs), "--previous-outputs-json", json.dumps(outputs))


def key_check(path: str, owner: str) -> str:
    """Shell code (for an activation hook) that fails unless ``path`` is a non-empty file, owner:owner, 0400."""
    return (f"[ -f {path} ] && [ -s {path} ] && [ \"$(stat -c '%U:%G:%a' {path})\" = {owner}:{owner}:400 ] "
            f"|| {{ echo 'activation: {path} is missing, empty, or not {owner}:{owner} 0400' >&2; exit 7; }}; ")


def hook_for(name: str, checks: str, settings: str = "") -> str:
    """An activation hook: the checks, the (non-secret) settings the system was built with, a marker."""
    return checks + settings + f"echo {name} >> {MARKER}"


def files_of(top: Path, skip: Path | None = None):
    """Every regular file under ``top`` (not following links), except under ``skip``."""
    for base, dirs, files in os.walk(top):
        if skip is not None and Path(base) == skip.parent:
            dirs[:] = [d for d in dirs if Path(base, d) != skip]
        for name in files:
            p = Path(base, name)
            if not p.is_symlink() and p.is_file():
                yield p


def leaks(data: bytes, secret_values: dict[str, str]) -> list[str]:
    """The names (never the values) of the secrets found in ``data``."""
    return [what for what, value in secret_values.items() if value.encode() in data]


def assert_same(got, expected, what: str) -> None:
    same = got == expected  # (a failure does not show the secret)
    assert same, f"{what} is not what was given"


def assert_no_secret(data: bytes, secret_values: dict[str, str], where: str) -> None:
    found = leaks(data, secret_values)  # (a failure names the secrets, never shows them)
    assert not found, f"{where} holds {', '.join(found)}"


def test_the_mvp_applies_in_dependency_order_and_reapplies_as_a_no_op(fake_nixos_hosts, toplevel_builder, tmp_path):
    hosts = dict(zip(MACHINES, fake_nixos_hosts(4)))
    for name, host in hosts.items():
        host.run("touch /etc/NIXOS")  # existing_vm's expect.nixos
    # The users the keys belong to, as the machines' NixOS configurations would declare them.
    hosts["garage"].run("groupadd -r garage && useradd -r -g garage garage")
    for service in OWN_SECRETS:
        hosts[service].run(f"groupadd -r {service} && useradd -r -g {service} {service}")

    # The deployer's secrets (deployment.nix's deployerDir/secrets): files, mode 0600, in a 0700 directory.
    secret_dir = tmp_path / "deployer" / "secrets"
    secret_dir.mkdir(parents=True)
    secret_dir.parent.chmod(0o700)
    secret_dir.chmod(0o700)

    def secret_file(name: str, content: str) -> Path:
        path = secret_dir / name
        path.write_text(content)
        path.chmod(0o600)
        return path

    secret_file("garage-rpc-secret", secrets.token_hex(32) + "\n")
    secret_file("garage-metrics-token", secrets.token_urlsafe(32) + "\n")
    secret_file("peertube-secrets", secrets.token_hex(32))
    secret_file("pixelfed-env", f"APP_KEY=base64:{secrets.token_urlsafe(32)}\n")
    # Garage on the node: the emulator, on the node's own 127.0.0.1 only, with the admin token
    # the deployer holds (it writes garage-admin-token itself, mode 0600).
    garage = InNamespace(hosts["garage"], tmp_path, "fediversity_providers.providers.garage_bucket.testing", "garage",
                         "--admin-port", str(ADMIN_PORT), token_file=secret_dir / "garage-admin-token")
    try:
        assert (secret_dir / "garage-admin-token").stat().st_mode & 0o777 == 0o600
        _scenario(hosts, garage, toplevel_builder, secret_dir)
    finally:
        garage.stop()


def _scenario(hosts, garage, toplevel_builder, secret_dir: Path) -> None:
    deployer = Deployer()
    members: dict[str, tuple[str, dict]] = {}  # member -> (type, inputs), in the order applied
    out: dict[str, dict] = {}

    def apply(member: str, type_: str, inputs: dict) -> dict:
        members[member] = (type_, inputs)
        out[member] = deployer.create(member, type_, inputs)
        return out[member]

    def key_from(name: str, owner: str) -> dict:  # deployment.nix's keyFrom
        return {"keyFile": str(secret_dir / name), "user": owner, "group": owner}

    # 1. The VMs exist already: reachable, with the expected host key, running NixOS.
    for name, host in hosts.items():
        vm = apply(f"{name}-vm", "existing_vm", {"ssh": host.ssh_input(), "expect": {"nixos": True}})
        assert vm["nixos"] is True and vm["ssh"]["hostPublicKey"] == host.host_public_key

    # 2. The Garage node's configuration, its secrets uploaded before activation (owner garage, 0400).
    garage_toplevel = toplevel_builder("mvp-garage", hook=hook_for(
        "garage", "".join(key_check(f"/run/keys/{k}", "garage") for k in GARAGE_KEYS)))
    toplevels = {"garage": garage_toplevel}
    apply("garage-config", "nixos_config", {
        "ssh": out["garage-vm"]["ssh"], "toplevel": garage_toplevel.path,
        "keys": {k: key_from(k, "garage") for k in GARAGE_KEYS}})

    # 3. The buckets, through the tunnel: Garage's admin API is on the node's 127.0.0.1 only.
    def bucket(alias: str, **extra) -> dict:
        return apply(alias, "garage_bucket", {
            "adminEndpoint": f"http://127.0.0.1:{ADMIN_PORT}", "ssh": out["garage-vm"]["ssh"],
            "adminTokenFile": str(secret_dir / "garage-admin-token"),
            # Not contacted (no CORS or lifecycle rules): the example's value.
            "s3Endpoint": f"http://{hosts['garage'].address}:3900", "region": "garage",
            "globalAlias": alias, **extra})

    logins = hosts["garage"].sshd_log.read_text().count("Accepted publickey")
    for service in SERVICES:
        media = bucket(f"{service}-media", website={"enable": True, "rootDomain": WEB_ROOT_DOMAIN},
                       keys=[{"name": service, "read": True, "write": True}])
        assert media["websiteEndpoint"] and media["keys"][service]["secretAccessKey"]
    bucket("peertube-private", keys=[{"name": "peertube", "read": True, "write": True,
                                      "accessKeyId": out["peertube-media"]["keys"]["peertube"]["accessKeyId"]}])
    assert sorted(a for b in garage.buckets() for a in b["globalAliases"]) == sorted(
        [f"{s}-media" for s in SERVICES] + ["peertube-private"])
    assert len(garage.keys()) == 3, "peertube-private uses PeerTube's key, it makes none"
    # The emulator in the node's namespace holds them: every admin request went through an SSH login.
    assert hosts["garage"].sshd_log.read_text().count("Accepted publickey") - logins >= 4

    # 4. The service machines: the bucket's secret as a key, the other settings built into the system.
    for service in SERVICES:
        media = out[f"{service}-media"]
        checks = key_check(f"/run/keys/{service}-s3", "root")
        keys = {f"{service}-s3": {"text": media["keys"][service]["secretAccessKey"]}}
        if service in OWN_SECRETS:
            checks += key_check(f"/run/keys/{OWN_SECRETS[service]}", service)
            keys[OWN_SECRETS[service]] = key_from(OWN_SECRETS[service], service)
        settings = {"bucket": media["globalAlias"], "accessKeyId": media["keys"][service]["accessKeyId"],
                    "publicUrl": media["websiteEndpoint"], "secretAccessKeyFile": f"/run/keys/{service}-s3"}
        if service == "peertube":
            settings["privateBucket"] = out["peertube-private"]["globalAlias"]
        written = "".join(f"echo {k}={v} >> /var/lib/fake-nixos/s3-settings; " for k, v in settings.items())
        toplevels[service] = toplevel_builder(f"mvp-{service}", hook=hook_for(service, checks, written))
        apply(f"{service}-config", "nixos_config", {
            "ssh": out[f"{service}-vm"]["ssh"], "toplevel": toplevels[service].path, "keys": keys})

    # -- every step did what it says ------------------------------------------------------------
    bucket_secrets = {f"{b}.{name}": k["secretAccessKey"] for b in (f"{s}-media" for s in SERVICES)
                      for name, k in out[b]["keys"].items()}
    secret_values = {**bucket_secrets,
                     **{name: (secret_dir / name).read_text().strip()
                        for name in (*GARAGE_KEYS, *OWN_SECRETS.values())}}
    assert all(len(v) >= 20 for v in secret_values.values())
    for name, host in hosts.items():
        config = out[f"{name}-config"]
        assert config["toplevel"] == toplevels[name].path == host.current_system()
        assert host.file(MARKER).read_text() == f"{name}\n", "the activation hook ran, once"
        assert all(k["status"] == "present" for k in config["keys"].values()) and config["keys"]
    for service in SERVICES:
        uploaded = hosts[service].file(f"/run/keys/{service}-s3").read_text()
        assert_same(uploaded, out[f"{service}-media"]["keys"][service]["secretAccessKey"], f"{service}-s3")
    for k in GARAGE_KEYS:
        assert_same(hosts["garage"].file(f"/run/keys/{k}").read_bytes(), (secret_dir / k).read_bytes(), k)
    settings = hosts["peertube"].file("/var/lib/fake-nixos/s3-settings").read_text()
    assert "bucket=peertube-media\n" in settings and "privateBucket=peertube-private\n" in settings

    # -- no secret where it does not belong -----------------------------------------------------
    for name, toplevel in toplevels.items():
        for store_path in toplevel.closure():
            top = Path(store_path)
            for f in [top] if top.is_file() else files_of(top):
                assert_no_secret(f.read_bytes(), secret_values, f"{name}'s closure: {f}")
    for member, outputs in out.items():
        found = leaks(json.dumps(outputs).encode(), secret_values)
        if members[member][0] == "garage_bucket":
            # Expected: a bucket's outputs hold its keys' secretAccessKey (marked x-sensitive in the
            # schema, kept in NixOps4's state, as Terraform's state keeps secrets; docs/nix.md).
            own = {k["secretAccessKey"] for k in outputs["keys"].values()}
            assert {secret_values[f] for f in found} <= own, f"{member}'s outputs hold {', '.join(found)}"
        else:
            assert_no_secret(json.dumps(outputs).encode(), secret_values, f"{member}'s outputs")
    for i, stderr in enumerate(deployer.stderr):
        assert_no_secret(stderr.encode(), secret_values, f"the stderr of runner call {i}")
    for name, host in hosts.items():
        keys_dir = Path(host.root) / "run" / "keys"
        for top in (Path(host.root), host.path("/nix")):
            for f in files_of(top, skip=keys_dir):
                assert_no_secret(f.read_bytes(), secret_values, f"{name}: {f}")
        # /tmp is the host's own tmpfs, not in its upper directory: read it through the host.
        tmp = host.run("find /tmp -xdev -type f -exec cat {} +").stdout
        assert_no_secret(tmp.encode(), secret_values, f"{name}: a file in /tmp")

    # -- a second apply of the same inputs changes nothing -------------------------------------
    def observed() -> dict:
        return {"buckets": {b["id"]: b for b in garage.buckets()}, "garage keys": {k["id"]: k for k in garage.keys()},
                "systems": {n: (h.current_system(), h.generation()) for n, h in hosts.items()},
                "keys on hosts": {n: {p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_uid, p.stat().st_gid)
                                      for p in (Path(h.root) / "run" / "keys").iterdir()} for n, h in hosts.items()}}

    before = observed()
    for member, (type_, inputs) in members.items():
        again = deployer.update(member, type_, inputs, out[member])
        changed = sorted(k for k in {*again, *out[member]} if again.get(k) != out[member].get(k))
        assert not changed, f"{member}: a second apply changed its outputs {changed}"
    now = observed()
    changed = sorted(f"{what}: {n}" for what in before for n in {*before[what], *now[what]}
                     if before[what].get(n) != now[what].get(n))
    assert not changed, f"a second apply changed {changed}"
    for name, host in hosts.items():  # the same system activated again (its keys checked again), nothing else
        assert host.activations() == [("switch", toplevels[name].path)] * 2
        assert host.file(MARKER).read_text() == f"{name}\n" * 2
    for i, stderr in enumerate(deployer.stderr):
        assert_no_secret(stderr.encode(), secret_values, f"the stderr of runner call {i}")
