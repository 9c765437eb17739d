"""The NixOS modules (Garage node, S3 clients, keys), evaluated with the real module system:
the nixpkgs lib, nixpkgs' own Garage module (tests/reference/nixpkgs-nixos), and the rest of
NixOS declared with nixpkgs' option types (tests/nix/nixos/options.nix).  Packages and the
toplevel are stand-ins (tests/nix/): `system.build.view` is the evaluated configuration.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from fediversity_providers.testing.nixeval import NixError, nix_eval
from fediversity_providers.testing.prereq import require_executable

ROOT = Path(__file__).resolve().parent.parent
NIXOS = ROOT / "nix-modules" / "nixos"
TESTNIX = ROOT / "tests" / "nix"


def system(tmp_path: Path, config: dict, extra: str = "{ }") -> dict:
    """The evaluated system with nix-modules' NixOS modules and `config` (JSON) as a module."""
    (tmp_path / "config.json").write_text(json.dumps(config))
    expression = f"""
      let
        lib = import {ROOT}/tests/reference/nixpkgs-lib/lib;
        pkgs = import {TESTNIX}/pkgs.nix {{ inherit lib; }};
        nixos = import {TESTNIX}/nixos/system.nix {{ inherit lib pkgs; }};
        evaluated = nixos {{ modules = [
          {NIXOS}/garage-node.nix {NIXOS}/s3-client.nix
          {{ system.stateVersion = "25.05"; }}
          (builtins.fromJSON (builtins.readFile {tmp_path}/config.json))
          ({extra})
        ]; }};
        c = evaluated.config;
      in {{
        view = c.system.build.view;
        toplevel = c.system.build.toplevel;
        warnings = c.warnings;
        garageToml = if c.services.garage.enable then c.environment.etc."garage.toml".source.passthru.value else null;
      }}
    """
    return nix_eval(expression, workdir=tmp_path)


GARAGE = {"enable": True, "rpcSecretFile": "/run/keys/garage-rpc-secret", "adminTokenFile": "/run/keys/garage-admin-token",
          "metricsTokenFile": "/run/keys/garage-metrics-token"}


def garage(tmp_path, extra: str = "{ }", **values):
    return system(tmp_path, {"networking": {"hostName": "garage"}, "fediversity": {"garageNode": {**GARAGE, **values}}}, extra)


def test_garage_node_with_nixpkgs_garage_module(tmp_path):
    result = garage(tmp_path, webRootDomain=".web.example.org", openFirewall=True)
    toml = result["garageToml"]
    # Garage reads its secret files itself (systemd credentials would read as 0440, which it refuses).
    assert toml["rpc_secret_file"] == GARAGE["rpcSecretFile"]
    assert toml["admin"] == {"api_bind_addr": "127.0.0.1:3903", "admin_token_file": GARAGE["adminTokenFile"],
                             "metrics_token_file": GARAGE["metricsTokenFile"]}
    assert toml["s3_web"] == {"bind_addr": "[::]:3902", "root_domain": ".web.example.org", "index": "index.html"}
    assert toml["s3_api"] == {"api_bind_addr": "[::]:3900", "s3_region": "garage"}
    view = result["view"]
    unit = view["systemd"]["services"]["garage"]
    assert "LoadCredential" not in unit["serviceConfig"]
    assert unit["serviceConfig"]["User"] == "garage" and unit["serviceConfig"]["DynamicUser"] is False
    assert unit["serviceConfig"]["ExecStart"].endswith("/bin/garage server")  # from nixpkgs' module
    # Garage starts once its three secret files exist, and when they arrive.
    files = [GARAGE["rpcSecretFile"], GARAGE["adminTokenFile"], GARAGE["metricsTokenFile"]]
    assert unit["unitConfig"]["ConditionPathExists"] == files
    path = view["systemd"]["paths"]["garage-keys"]
    assert path["pathConfig"] == {"PathChanged": files, "Unit": "garage.service"}
    assert path["wantedBy"] == ["multi-user.target"]
    assert view["networking"]["firewall"]["allowedTCPPorts"] == [3900, 3902]  # never the admin port
    assert view["users"]["users"]["garage"]["isSystemUser"] is True
    # NixOS's /run/keys is mode 0750, group keys: Garage reads its secrets there itself.
    assert "keys" in view["users"]["users"]["garage"]["extraGroups"]
    assert result["toplevel"].endswith("-nixos-system-garage")


def test_garage_web_on_port_80_gets_the_capability(tmp_path):
    view = garage(tmp_path, webRootDomain=".web.example.org", webPort=80)["view"]
    assert view["systemd"]["services"]["garage"]["serviceConfig"]["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert "s3_web" not in garage(tmp_path)["garageToml"]


def test_garage_three_nodes(tmp_path):
    result = garage(tmp_path, replicationFactor=3, rpcPublicAddr="192.0.2.10:3901", bootstrapPeers=["ab@192.0.2.11:3901"],
                    openFirewall=True, s3Port=9000, dataDir="/srv/garage")
    toml = result["garageToml"]
    assert toml["replication_factor"] == 3 and toml["rpc_public_addr"] == "192.0.2.10:3901"
    assert toml["s3_api"]["api_bind_addr"] == "[::]:9000" and toml["data_dir"] == "/srv/garage"
    assert result["view"]["networking"]["firewall"]["allowedTCPPorts"] == [9000, 3901]
    assert result["warnings"] == []


def test_garage_node_of_a_cluster(tmp_path):
    """One node of a garage_cluster cluster: the shared secret as a key file, its address, zone and modes."""
    result = garage(tmp_path, replicationFactor=3, consistencyMode="degraded", zone="paris",
                    rpcPublicAddr="192.0.2.21:3901", openFirewall=True)
    toml = result["garageToml"]
    assert toml["replication_factor"] == 3 and toml["consistency_mode"] == "degraded"
    assert toml["rpc_public_addr"] == "192.0.2.21:3901" and toml["rpc_bind_addr"] == "[::]:3901"
    assert toml["rpc_secret_file"] == GARAGE["rpcSecretFile"] and "rpc_secret" not in toml
    assert toml.get("bootstrap_peers", []) == []  # garage_cluster connects the nodes
    assert result["view"]["networking"]["firewall"]["allowedTCPPorts"] == [3900, 3901]
    unit = result["view"]["systemd"]["services"]["garage"]
    assert GARAGE["rpcSecretFile"] in unit["unitConfig"]["ConditionPathExists"]  # starts once the secret is there
    assert "garage-layout" not in result["view"]["systemd"]["services"]  # the layout is garage_cluster's
    assert unit["description"] == "Garage object store, zone paris"
    assert result["warnings"] == []
    assert garage(tmp_path)["garageToml"]["consistency_mode"] == "consistent"


@pytest.mark.parametrize("values, message", [
    ({"replicationFactor": 3}, "rpcPublicAddr"),
    ({"replicationFactor": 2}, "replicationFactor = 2 makes this node one of a cluster"),
    ({"replicationFactor": 8, "rpcPublicAddr": "x:3901"}, "replicationFactor"),
    ({"consistencyMode": "eventual"}, "consistencyMode"),
    ({"zone": "two words"}, "zone"),
    ({"rpcSecretFile": "/nix/store/abc-rpc-secret"}, "Nix store"),
    ({"metricsTokenFile": "/nix/store/abc-token"}, "Nix store"),
    ({"openAdminFirewall": True}, "SSH tunnel"),
])
def test_garage_refusals(tmp_path, values, message):
    with pytest.raises(NixError, match=message):
        garage(tmp_path, **values)


def test_garage_refuses_services_on_the_same_machine(tmp_path):
    with pytest.raises(NixError, match="dedicated"):
        garage(tmp_path, extra='{ services.pixelfed = { enable = true; domain = "x"; secretFile = "/run/keys/p"; }; }')


def bucket(service: str, **extra) -> dict:
    return {"enable": True, "endpoint": "http://192.0.2.10:3900", "region": "garage", "bucket": f"{service}-media",
            "accessKeyId": "GK" + "0" * 24, "secretAccessKeyFile": f"/run/keys/{service}-s3",
            "publicUrl": f"http://{service}-media.web.example.org", **extra}


SERVICES = """{
  services.mastodon = { enable = true; localDomain = "m.example.org"; smtp.fromAddress = "m@example.org"; streamingProcesses = 1; };
  services.peertube = { enable = true; localDomain = "p.example.org"; };
  services.pixelfed = { enable = true; domain = "x.example.org"; secretFile = "/run/keys/pixelfed-env"; };
}"""


def clients(tmp_path, extra: str = SERVICES, **services) -> dict:
    return system(tmp_path, {"networking": {"hostName": "media"}, "fediversity": {"s3Client": services}}, extra)


def test_s3_clients_with_public_urls_and_keys(tmp_path):
    result = clients(tmp_path, mastodon=bucket("mastodon"),
                     peertube=bucket("peertube", privateBucket="peertube-private"), pixelfed=bucket("pixelfed"))
    view = result["view"]
    mastodon = view["services"]["mastodon"]
    assert mastodon["extraConfig"]["S3_ALIAS_HOST"] == "mastodon-media.web.example.org"
    assert mastodon["extraConfig"]["S3_BUCKET"] == "mastodon-media"
    assert mastodon["extraEnvFiles"] == ["/run/fediversity-s3/mastodon.env"]
    storage = view["services"]["peertube"]["settings"]["object_storage"]
    assert storage["upload_acl"] == {"public": None, "private": None}  # Garage has no PutObjectAcl
    assert storage["web_videos"]["base_url"] == "http://peertube-media.web.example.org"
    assert storage["streaming_playlists"]["bucket_name"] == "peertube-media"
    assert storage["user_exports"]["bucket_name"] == storage["original_video_files"]["bucket_name"] == "peertube-private"
    assert view["services"]["peertube"]["serviceEnvironmentFile"] == "/run/fediversity-s3/peertube.env"
    assert view["services"]["pixelfed"]["settings"]["AWS_URL"] == "http://pixelfed-media.web.example.org"
    units = view["systemd"]["services"]
    for unit in ("fediversity-s3-secret-mastodon", "mastodon-init-dirs", "peertube", "phpfpm-pixelfed"):
        assert units[unit]["unitConfig"]["ConditionPathExists"][0].startswith("/run/keys/"), unit
        assert f"{unit}-keys" in view["systemd"]["paths"]
    for service in ("mastodon", "peertube", "pixelfed"):  # the S3 secret's path reaches systemd only
        assert f"/run/keys/{service}-s3" not in json.dumps(view["services"])
    assert result["warnings"] == []


def test_an_operators_own_settings_win_without_a_conflict(tmp_path):
    extra = SERVICES[:-1] + """
      services.peertube.serviceEnvironmentFile = "/run/keys/peertube-env";
      services.mastodon.extraConfig.SINGLE_USER_MODE = "true";
      services.peertube.settings.object_storage.upload_acl.public = "public-read";
    }"""
    result = clients(tmp_path, extra, mastodon=bucket("mastodon"), peertube=bucket("peertube"))
    view = result["view"]
    assert view["services"]["peertube"]["serviceEnvironmentFile"] == "/run/keys/peertube-env"
    assert view["services"]["mastodon"]["extraConfig"]["SINGLE_USER_MODE"] == "true"
    assert view["services"]["mastodon"]["extraConfig"]["S3_BUCKET"] == "mastodon-media"
    assert view["services"]["peertube"]["settings"]["object_storage"]["upload_acl"]["public"] == "public-read"
    assert any("AWS_SECRET_ACCESS_KEY" in w for w in result["warnings"])


def test_s3_client_refuses_a_secret_in_the_store(tmp_path):
    with pytest.raises(NixError, match="Nix store"):
        clients(tmp_path, mastodon=bucket("mastodon", secretAccessKeyFile="/nix/store/xyz-secret"))


def test_s3_secret_unit_writes_an_environment_file_only_root_reads(tmp_path):
    bash = require_executable("bash")
    view = clients(tmp_path, mastodon=bucket("mastodon"))["view"]
    script = view["systemd"]["services"]["fediversity-s3-secret-mastodon"]["script"]
    run_dir = tmp_path / "run"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "secret").write_text("c2VjcmV0+/=\n")
    script = script.replace("/run/fediversity-s3", str(run_dir))  # not the machine's /run
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(credentials)}
    done = subprocess.run([bash, "-euo", "pipefail", "-c", "umask 0077\n" + script], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    env_file = run_dir / "mastodon.env"
    assert env_file.read_text() == "AWS_SECRET_ACCESS_KEY=c2VjcmV0+/=\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert not list(run_dir.glob("*.tmp"))


FAKE_GARAGE = r"""#!/bin/sh
# Records its calls; answers like Garage's CLI (status, node id, layout show).
echo "$*" >> "$CALLS"
case "$1 $2" in
  "status ") printf '==== HEALTHY NODES ====\nID  Hostname  Address  Tags  Zone  Capacity\n563e1ac825ee3323  garage  [::1]:3901  %s\n' "$ROLE" ;;
  "node id") echo "563e1ac825ee3323aa441e72c26d1030d6d4414aeb3dd25287c531e7fc2bc95d@[::1]:3901" ;;
  "layout show") echo "==== CURRENT CLUSTER LAYOUT ===="; echo "Current cluster layout version: 0" ;;
esac
"""


@pytest.mark.parametrize("role, applied", [("NO ROLE ASSIGNED", True), ("[]  dc1  100.0 GB", False)])
def test_garage_layout_unit_applies_a_single_nodes_layout_once(tmp_path, role, applied):
    bash = require_executable("bash")
    result = garage(tmp_path, layout={"capacity": "100G"})
    unit = result["view"]["systemd"]["services"]["garage-layout"]
    assert unit["requires"] == unit["after"] == ["garage.service"]
    assert unit["serviceConfig"]["Type"] == "oneshot"
    assert unit["unitConfig"]["ConditionPathExists"][0] == GARAGE["rpcSecretFile"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "garage").write_text(FAKE_GARAGE)
    (bin_dir / "garage").chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "ROLE": role}
    done = subprocess.run([bash, "-euo", "pipefail", "-c", unit["script"]], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    if applied:
        assert "layout assign -z dc1 -c 100G 563e1ac825ee3323aa441e72c26d1030d6d4414aeb3dd25287c531e7fc2bc95d" in lines
        assert lines[-1] == "layout apply --version 1"
    else:
        assert lines == ["status"]


def test_garage_layout_is_for_a_single_node(tmp_path):
    with pytest.raises(NixError, match="layout.capacity"):
        garage(tmp_path, layout={"capacity": "100G"}, replicationFactor=3, rpcPublicAddr="x:3901")


def test_key_owners_are_given_their_files_during_activation(tmp_path):
    """keyOwners' activation script, evaluated by the real module system and run as the shell it is."""
    import os
    import pwd
    import subprocess

    key, link, target = tmp_path / "svc-secret", tmp_path / "linked", tmp_path / "not-a-key"
    key.write_text("s3cret")
    key.chmod(0o400)
    target.write_text("someone else's")
    link.symlink_to(target)
    owners = {str(p): {"user": "nobody", "group": "nogroup"} for p in (key, link, tmp_path / "absent")}
    result = system(tmp_path, {"networking": {"hostName": "svc"}, "fediversity": {"keyOwners": owners}})
    script = result["view"]["system"]["activationScripts"]["fediversity-key-owners"]
    assert set(script["deps"]) == {"users", "groups"}, "after NixOS creates users and groups"
    done = subprocess.run(["sh", "-euc", script["text"]], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert pwd.getpwuid(os.stat(key).st_uid).pw_name == "nobody" and (os.stat(key).st_mode & 0o777) == 0o400
    assert os.stat(target).st_uid == 0, "a link is not followed"
    with pytest.raises(Exception, match="not an absolute, normalised path"):
        system(tmp_path, {"networking": {"hostName": "svc"},
                          "fediversity": {"keyOwners": {"/run/keys/../etc/shadow": {"user": "nobody", "group": "x"}}}})


def test_a_garage_node_gives_its_secret_files_to_garage(tmp_path):
    view = garage(tmp_path)["view"]
    assert view["fediversity"]["keyOwners"] == {f: {"user": "garage", "group": "garage"} for f in
                                                (GARAGE["rpcSecretFile"], GARAGE["adminTokenFile"],
                                                 GARAGE["metricsTokenFile"])}
    text = view["system"]["activationScripts"]["fediversity-key-owners"]["text"]
    assert all(f"chown garage:garage {f}" in text for f in view["fediversity"]["keyOwners"])
