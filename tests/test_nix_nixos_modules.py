"""The NixOS modules (Garage node, S3 client), evaluated with Debian's Nix and a stand-in `lib`.

Without nixpkgs there is no module system: the test gives each module a small
`lib` whose mkIf/mkMerge/mkForce return markers, sets the module's own options
(defaults from its declarations, overridden by the test), and resolves the
markers of the `config` it returns.  This checks the modules' own logic: which
settings, units, credentials, ports and assertions come out.  Evaluation
against nixpkgs' real modules is `nix flake check` (docs/nix.md).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path


from fediversity_providers.testing.nixeval import nix_eval
from fediversity_providers.testing.prereq import require_executable

NIXOS = Path(__file__).resolve().parent.parent / "nix-modules" / "nixos"

FAKE_NIXOS_LIB = r"""
let
  marker = name: extra: { _type = name; } // extra;
  option = args: { _type = "option"; } // args;
  type = name: { _type = "option-type"; inherit name; };
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  hasSuffix = x: s: let n = builtins.stringLength s; m = builtins.stringLength x; in n >= m && builtins.substring (n - m) m s == x;
in rec {
  mkOption = option;
  mkEnableOption = what: option { default = false; description = "Whether to enable ${what}."; };
  mkPackageOption = pkgs: name: _: option { default = pkgs.${name}; };
  # A false condition's content is never evaluated, as in the module system.
  mkIf = condition: content: marker "if" ({ inherit condition; } // (if condition then { inherit content; } else { }));
  mkMerge = contents: marker "merge" { inherit contents; };
  mkForce = content: marker "override" { priority = 50; inherit content; };
  mkDefault = content: marker "override" { priority = 1000; inherit content; };
  types = {
    str = type "str"; bool = type "bool"; port = type "port";
    strMatching = re: type "strMatching";
    enum = vs: type "enum"; nullOr = t: type "nullOr"; listOf = t: type "listOf";
    submodule = m: type "submodule";
  };
  inherit hasPrefix;
  optional = c: x: if c then [ x ] else [ ];
  optionals = c: xs: if c then xs else [ ];
  optionalAttrs = c: a: if c then a else { };
  optionalString = c: s: if c then s else "";
  mapAttrs = builtins.mapAttrs;
  mapAttrsToList = f: a: map (n: f n a.${n}) (builtins.attrNames a);
  filterAttrs = p: a: builtins.listToAttrs (builtins.concatMap (n: if p n a.${n} then [ { name = n; value = a.${n}; } ] else [ ]) (builtins.attrNames a));
  concatMapAttrs = f: a: builtins.foldl' (acc: n: acc // f n a.${n}) { } (builtins.attrNames a);
  genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
  removeSuffix = x: s: if hasSuffix x s then builtins.substring 0 (builtins.stringLength s - builtins.stringLength x) s else s;
  splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
  head = builtins.head;
  last = xs: builtins.elemAt xs (builtins.length xs - 1);
}
"""

PKGS = '{ garage = "/nix/store/g-garage"; coreutils = "/nix/store/c-coreutils"; }'


def evaluate(module: str, tmp_path: Path, own: str, values: dict, others: dict | None = None) -> dict:
    """The resolved `config` of nix-modules/nixos/<module>, with `<own>` set to defaults // values."""
    (tmp_path / "lib.nix").write_text(FAKE_NIXOS_LIB)
    (tmp_path / "values.json").write_text(json.dumps({"own": values, "others": others or {}}))
    path = own.removeprefix("fediversity.")
    expression = f"""
      let
        lib = import {tmp_path}/lib.nix;
        pkgs = {PKGS};
        module = import {NIXOS}/{module};
        given = builtins.fromJSON (builtins.readFile {tmp_path}/values.json);
        declared = (module {{ config = {{ }}; inherit lib pkgs; }}).options.fediversity.{path};
        own = builtins.mapAttrs (n: o: o.default or null) declared // given.own;
        config = lib.genAttrs [ "services" ] (_: {{
          mastodon.enable = false; peertube.enable = false; pixelfed.enable = false;
        }}) // given.others // {{ fediversity.{path} = own; }};
      in (module {{ inherit config lib pkgs; }}).config
    """
    resolved = resolve(nix_eval(expression, workdir=tmp_path))
    return {} if resolved is _DROP else resolved


def merge(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if k in out else v
        return out
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    raise AssertionError(f"conflicting definitions: {a!r} and {b!r}")


_DROP = object()


def resolve(value):
    if isinstance(value, dict):
        kind = value.get("_type")
        if kind == "if":
            return resolve(value["content"]) if value["condition"] else _DROP
        if kind == "merge":
            out: dict = {}
            for part in value["contents"]:
                part = resolve(part)
                if part is not _DROP:
                    out = merge(out, part)
            return out
        if kind == "override":
            return resolve(value["content"])
        return {k: r for k, v in value.items() if (r := resolve(v)) is not _DROP}
    if isinstance(value, list):
        return [resolve(v) for v in value]
    return value


def failed(config: dict) -> list[str]:
    return [a["message"] for a in config.get("assertions", []) if not a["assertion"]]


GARAGE = {"enable": True, "rpcSecretFile": "/var/lib/secrets/rpc", "adminTokenFile": "/var/lib/secrets/admin"}


def garage(tmp_path, others=None, **values):
    return evaluate("garage-node.nix", tmp_path, "fediversity.garageNode", {**GARAGE, **values}, others)


def test_garage_single_node_defaults(tmp_path):
    config = garage(tmp_path)
    assert failed(config) == [] and config["warnings"] == []
    settings = config["services"]["garage"]["settings"]
    assert config["services"]["garage"]["enable"] is True
    assert config["services"]["garage"]["package"] == "/nix/store/g-garage"
    assert settings["replication_factor"] == 1
    assert settings["rpc_secret_file"] == "/run/credentials/garage.service/rpc_secret"
    assert settings["admin"] == {"api_bind_addr": "[::]:3903",
                                 "admin_token_file": "/run/credentials/garage.service/admin_token"}
    assert settings["s3_api"] == {"api_bind_addr": "[::]:3900", "s3_region": "garage"}
    assert settings["rpc_bind_addr"] == "[::]:3901" and "rpc_public_addr" not in settings
    assert (settings["data_dir"], settings["metadata_dir"]) == ("/var/lib/garage/data", "/var/lib/garage/meta")
    service = config["systemd"]["services"]["garage"]["serviceConfig"]
    assert service["LoadCredential"] == ["rpc_secret:/var/lib/secrets/rpc", "admin_token:/var/lib/secrets/admin"]
    assert service["DynamicUser"] is False and service["User"] == "garage"
    assert config["systemd"]["tmpfiles"]["rules"] == ["d /var/lib/garage/data 0700 garage garage - -",
                                                      "d /var/lib/garage/meta 0700 garage garage - -"]
    assert config["networking"]["firewall"]["allowedTCPPorts"] == []
    # The secret files' paths reach systemd only, never Garage's configuration file.
    assert "/var/lib/secrets" not in json.dumps(config["services"])


def test_garage_three_nodes(tmp_path):
    config = garage(tmp_path, replicationFactor=3, rpcPublicAddr="192.0.2.10:3901", bootstrapPeers=["ab@192.0.2.11:3901"],
                    openFirewall=True, openAdminFirewall=True, s3Port=9000, dataDir="/srv/garage")
    assert failed(config) == [] and config["warnings"] == []
    settings = config["services"]["garage"]["settings"]
    assert settings["replication_factor"] == 3
    assert settings["rpc_public_addr"] == "192.0.2.10:3901" and settings["bootstrap_peers"] == ["ab@192.0.2.11:3901"]
    assert settings["s3_api"]["api_bind_addr"] == "[::]:9000" and settings["data_dir"] == "/srv/garage"
    assert config["networking"]["firewall"]["allowedTCPPorts"] == [9000, 3901, 3903]
    assert "/srv/garage" in config["systemd"]["services"]["garage"]["serviceConfig"]["ReadWritePaths"]


def test_garage_refusals(tmp_path):
    assert any("rpcPublicAddr" in m for m in failed(garage(tmp_path, replicationFactor=3)))
    assert garage(tmp_path, replicationFactor=3, rpcPublicAddr="x:3901")["warnings"]  # no peers: a warning
    assert any("Nix store" in m for m in failed(garage(tmp_path, rpcSecretFile="/nix/store/abc-rpc")))
    colocated = garage(tmp_path, others={"services": {"mastodon": {"enable": True}, "peertube": {"enable": False},
                                                      "pixelfed": {"enable": False}}})
    assert any("dedicated" in m for m in failed(colocated))
    assert garage(tmp_path, enable=False) == {}


def bucket(service: str, **extra) -> dict:
    units = {"mastodon": ["mastodon-init-dirs.service"], "peertube": ["peertube.service"],
             "pixelfed": ["pixelfed-data-setup.service", "phpfpm-pixelfed.service", "pixelfed-horizon.service"]}
    return {"enable": True, "endpoint": "https://s3.example.org", "region": "garage", "bucket": f"{service}-media",
            "accessKeyId": "GK" + "0" * 24, "secretAccessKeyFile": f"/var/lib/secrets/{service}-s3",
            "publicUrl": f"https://{service}-media.example.org/", "units": units[service], **extra}


def s3(tmp_path, **services):
    values = {s: services.get(s, {"enable": False, "units": []}) for s in ("mastodon", "peertube", "pixelfed")}
    return evaluate("s3-client.nix", tmp_path, "fediversity.s3Client", values)


def test_s3_client_mastodon(tmp_path):
    config = s3(tmp_path, mastodon=bucket("mastodon"))
    assert failed(config) == []
    mastodon = config["services"]["mastodon"]
    assert mastodon["extraConfig"] == {
        "S3_ENABLED": "true", "S3_ENDPOINT": "https://s3.example.org", "S3_PROTOCOL": "https",
        "S3_HOSTNAME": "s3.example.org", "S3_REGION": "garage", "S3_BUCKET": "mastodon-media",
        "AWS_ACCESS_KEY_ID": "GK" + "0" * 24, "S3_ALIAS_HOST": "mastodon-media.example.org"}
    assert mastodon["extraEnvFiles"] == ["/run/fediversity-s3/mastodon.env"]
    unit = config["systemd"]["services"]["fediversity-s3-secret-mastodon"]
    assert unit["before"] == unit["requiredBy"] == ["mastodon-init-dirs.service"]
    assert unit["serviceConfig"]["LoadCredential"] == ["secret:/var/lib/secrets/mastodon-s3"]
    assert set(config["services"]) == {"mastodon"}
    assert "/var/lib/secrets" not in json.dumps(config["services"])


def test_s3_client_peertube_and_pixelfed(tmp_path):
    config = s3(tmp_path, peertube=bucket("peertube", publicUrl=None), pixelfed=bucket("pixelfed"))
    storage = config["services"]["peertube"]["settings"]["object_storage"]
    assert storage["enabled"] is True and storage["endpoint"] == "https://s3.example.org"
    assert storage["streaming_playlists"]["bucket_name"] == storage["web_videos"]["bucket_name"] == "peertube-media"
    assert storage["streaming_playlists"]["prefix"] != storage["web_videos"]["prefix"]
    assert storage["web_videos"]["base_url"] == ""
    assert config["services"]["peertube"]["serviceEnvironmentFile"] == "/run/fediversity-s3/peertube.env"
    assert config["systemd"]["services"]["peertube"]["environment"]["AWS_ACCESS_KEY_ID"] == "GK" + "0" * 24
    pixelfed = config["services"]["pixelfed"]["settings"]
    assert pixelfed["AWS_BUCKET"] == "pixelfed-media" and pixelfed["AWS_USE_PATH_STYLE_ENDPOINT"] is True
    assert pixelfed["AWS_URL"] == "https://pixelfed-media.example.org/"
    for unit in ("pixelfed-data-setup", "phpfpm-pixelfed", "pixelfed-horizon"):
        assert config["systemd"]["services"][unit]["serviceConfig"]["EnvironmentFile"] == ["/run/fediversity-s3/pixelfed.env"]
    assert {u for u in config["systemd"]["services"] if u.startswith("fediversity-")} == {
        "fediversity-s3-secret-peertube", "fediversity-s3-secret-pixelfed"}


def test_s3_client_refuses_a_secret_in_the_store(tmp_path):
    config = s3(tmp_path, mastodon=bucket("mastodon", secretAccessKeyFile="/nix/store/xyz-secret"))
    assert any("Nix store" in m for m in failed(config))
    assert s3(tmp_path) == {"assertions": [], "systemd": {"services": {}}}


def test_s3_secret_unit_writes_an_environment_file_only_root_reads(tmp_path):
    bash = require_executable("bash")
    config = s3(tmp_path, mastodon=bucket("mastodon"))
    script = config["systemd"]["services"]["fediversity-s3-secret-mastodon"]["script"]
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
