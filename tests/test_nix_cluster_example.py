"""The cluster example (nix-modules/examples/cluster), evaluated for real, as the MVP's is.

Three Garage nodes in three zones, laid out by garage_cluster, the services'
buckets on that cluster, and the MVP's service machines using them: upstream
NixOps4's own nix/, the nixpkgs lib, the real NixOS module system with
nixpkgs' Garage module (tests/nix/), and NixOps4's apply simulated in waves.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from support import example_bucket_outputs, example_config_outputs, example_secret_of, example_vm_outputs

from fediversity_providers.core import nulls
from fediversity_providers.core.plugins import Registry
from fediversity_providers.testing.nixeval import NixError, nix_eval

ROOT = Path(__file__).resolve().parent.parent
TESTNIX = ROOT / "tests" / "nix"
EXAMPLE = ROOT / "nix-modules" / "examples" / "cluster"
NODES = ("garage1", "garage2", "garage3")
SERVICES = ("mastodon", "peertube", "pixelfed")
BUCKETS = ("mastodon-media", "peertube-media", "pixelfed-media", "peertube-private")
RPC_SECRET_FILE = "/var/lib/fediversity/deployer/secrets/garage-rpc-secret"


def schemas() -> dict:
    return {name: reg.resource_type for name, reg in Registry().types.items() if reg.builtin}



secret_of = example_secret_of


def applied_outputs() -> dict:
    outputs: dict = {"state": {}}
    hosts = {**{n: 21 + i for i, n in enumerate(NODES)}, **{s: 11 + i for i, s in enumerate(SERVICES)}}
    for name, i in hosts.items():
        outputs[f"{name}-vm"] = example_vm_outputs(name, f"192.0.2.{i}")
        outputs[f"{name}-config"] = example_config_outputs(name)
    outputs["garage"] = {"layoutVersion": 1, "apiVersion": "v2", "replicationFactor": 3, "nodes": [], "drift": [],
                         "health": {"status": "healthy"}}
    for b in BUCKETS:
        outputs[b] = example_bucket_outputs(b, "http://192.0.2.21:3900")
    return outputs


def cluster_expression(tmp: Path) -> str:
    (tmp / "outputs.json").write_text(json.dumps(applied_outputs()))
    return f"""
      import {TESTNIX}/mvp.nix {{
        outputs = builtins.fromJSON (builtins.readFile {tmp}/outputs.json);
        exampleDir = {EXAMPLE};
      }}
    """


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    return nix_eval(cluster_expression(tmp), workdir=tmp)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, cluster):
    """Each Garage node's system as the deployment deploys it, from the real NixOS module system.

    machines.nix plus what deployment.nix adds (the web root domain, the same as the
    buckets' `website.rootDomain`); its toplevel is compared with the one the
    deployment gives nixos_config, so this is the very configuration deployed.
    """
    tmp = tmp_path_factory.mktemp("cluster-nodes")
    root_domain = cluster["members"]["mastodon-media"]["inputs"]["website"]["rootDomain"]
    expression = f"""
      let
        lib = import {ROOT}/tests/reference/nixpkgs-lib/lib;
        pkgs = import {TESTNIX}/pkgs.nix {{ inherit lib; }};
        nixosSystem = import {TESTNIX}/nixos/system.nix {{ inherit lib pkgs; }};
        machines = import {EXAMPLE}/machines.nix;
        providers = (import {ROOT}/nix-modules/flake.nix).outputs {{
          self = providers // {{ packages.x86_64-linux.default = pkgs.storePath "fediversity-providers" "x86_64-linux"; }};
          nixpkgs.lib = lib // {{ inherit nixosSystem; }};
        }};
        node = name: (nixosSystem {{
          system = "x86_64-linux";
          modules = [
            providers.nixosModules.default
            machines.${{name}}
            {{ fediversity.garageNode.webRootDomain = {json.dumps(root_domain)}; }}
          ];
        }}).config;
      in lib.genAttrs [ {" ".join(json.dumps(n) for n in NODES)} ] (name: let c = node name; in {{
        toplevel = c.system.build.toplevel;
        view = c.system.build.view;
        warnings = c.warnings;
        settings = c.services.garage.settings;
        # What Garage reads: the generated garage.toml (nixpkgs' Garage module).
        garageToml = c.environment.etc."garage.toml".source.passthru.value;
        zone = c.fediversity.garageNode.zone;
      }})
    """
    return nix_eval(expression, workdir=tmp)


def test_the_example_is_a_root_with_three_nodes_a_cluster_and_the_buckets(cluster):
    expected = {"state", "garage", *BUCKETS, *(f"{m}-vm" for m in NODES + SERVICES),
                *(f"{m}-config" for m in NODES + SERVICES)}
    assert set(cluster["members"]) == expected
    assert cluster["members"]["garage"]["type"] == "garage_cluster"
    assert cluster["members"]["garage"]["state"] == ["state"]


def test_three_nodes_in_three_distinct_zones_with_replication_three(cluster):
    inputs = cluster["members"]["garage"]["inputs"]
    assert inputs["replicationFactor"] == 3
    zones = [node["zone"] for node in inputs["nodes"]]
    assert len(zones) == 3 and len(set(zones)) == 3
    for node, name in zip(inputs["nodes"], NODES):
        assert node["ssh"] == applied_outputs()[f"{name}-vm"]["ssh"]
        assert node["capacity"] > 0 and node["rpcAddress"] is None
        assert node["adminEndpoint"] == "http://127.0.0.1:3903"


def test_the_inspected_node_systems_are_the_deployed_ones(nodes, cluster):
    for name in NODES:
        assert nodes[name]["toplevel"] == cluster["members"][f"{name}-config"]["inputs"]["toplevel"], name
        assert nodes[name]["toplevel"].endswith(f"-nixos-system-{name}")
        assert nodes[name]["warnings"] == []


def test_each_node_is_one_node_of_the_cluster(nodes, cluster):
    zones = {n["tags"][0]: n["zone"] for n in cluster["members"]["garage"]["inputs"]["nodes"]}
    for i, name in enumerate(NODES):
        toml = nodes[name]["garageToml"]
        assert toml == nodes[name]["settings"]
        assert toml["replication_factor"] == 3
        assert toml["consistency_mode"] == "consistent"
        assert toml["rpc_public_addr"] == f"192.0.2.{21 + i}:3901" and toml["rpc_bind_addr"] == "[::]:3901"
        assert toml.get("bootstrap_peers", []) == []  # garage_cluster connects the nodes
        assert toml["admin"]["api_bind_addr"].startswith("127.0.0.1:")
        assert toml["s3_web"]["root_domain"] == ".web.example.org"
        view = nodes[name]["view"]
        assert 3901 in view["networking"]["firewall"]["allowedTCPPorts"], "the other nodes reach its RPC port"
        assert 3903 not in view["networking"]["firewall"]["allowedTCPPorts"], "never the admin port"
        assert "garage-layout" not in view["systemd"]["services"], "the layout is garage_cluster's"
        assert nodes[name]["zone"] == zones[name], "the node and garage_cluster agree on its zone"
        assert view["systemd"]["services"]["garage"]["description"] == f"Garage object store, zone {zones[name]}"


def test_garage_reads_the_rpc_secret_from_its_key_file_in_a_form_it_accepts(nodes, cluster):
    """The key file itself, owned by garage with no group or other bit: never the store, never a credential."""
    for name in NODES:
        toml, view = nodes[name]["garageToml"], nodes[name]["view"]
        assert toml["rpc_secret_file"] == "/run/keys/garage-rpc-secret"
        assert "rpc_secret" not in toml, "the secret itself is never in the configuration (the store)"
        unit = view["systemd"]["services"]["garage"]
        assert unit["serviceConfig"]["ExecStart"].endswith("/bin/garage server")  # nixpkgs' Garage module
        # systemd credentials would read as 0440 inside the service, which Garage refuses.
        assert "LoadCredential" not in unit["serviceConfig"] and "allow_world_readable_secrets" not in toml
        assert unit["serviceConfig"]["User"] == "garage" and unit["serviceConfig"]["DynamicUser"] is False
        assert "keys" in view["users"]["users"]["garage"]["extraGroups"], "it enters /run/keys (0750, group keys)"
        # The file it reads is the key nixos_config uploads, with an owner and mode Garage accepts.
        key = cluster["members"][f"{name}-config"]["inputs"]["keys"]["garage-rpc-secret"]
        assert f"{key.get('destDir') or '/run/keys'}/garage-rpc-secret" == toml["rpc_secret_file"]
        assert key["user"] == "garage" and int(key["permissions"], 8) & 0o077 == 0
        # Uploaded before the activation that creates its user, owned by root until then: the
        # activation gives it to garage (keyOwners) before Garage starts, and Garage waits for it.
        assert key["uploadAt"] == "pre-activation"
        assert view["fediversity"]["keyOwners"][toml["rpc_secret_file"]] == {"user": "garage", "group": "garage"}
        script = view["system"]["activationScripts"]["fediversity-key-owners"]
        assert set(script["deps"]) == {"users", "groups"}
        assert f"chown garage:garage {toml['rpc_secret_file']}" in script["text"]
        assert toml["rpc_secret_file"] in unit["unitConfig"]["ConditionPathExists"]
        assert toml["rpc_secret_file"] in view["systemd"]["paths"]["garage-keys"]["pathConfig"]["PathChanged"]
        assert "garage-rpc-secret" in json.dumps(view) and RPC_SECRET_FILE not in json.dumps(view)


def test_the_evaluation_reads_no_secret_on_the_deployer(tmp_path):
    """Under restrict-eval, with only the repository and the test's files readable, the whole deployment
    evaluates: no secret file on the deployer is read, so none can reach the evaluated text or the store."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    deployed = nix_eval(cluster_expression(allowed), workdir=allowed, restrict_to=[ROOT, allowed])
    assert deployed["members"] == nix_eval(cluster_expression(allowed), workdir=allowed)["members"]
    # The restriction holds: a file outside those directories cannot be read.
    outside = tmp_path / "garage-rpc-secret"
    outside.write_text("0" * 64 + "\n")
    with pytest.raises(NixError, match="forbidden in restricted mode"):
        nix_eval(f"builtins.readFile {outside}", workdir=allowed, restrict_to=[ROOT, allowed])


def test_one_apply_in_an_order_that_works(cluster):
    order = {name: i for i, wave in enumerate(cluster["waves"]) for name in wave}
    assert set(order) == set(cluster["members"]), "some members never become ready"
    for n in NODES:
        assert order["garage"] > order[f"{n}-config"] > order[f"{n}-vm"]
    for b in BUCKETS:
        assert order[b] > order["garage"], "buckets wait for the layout"
    for s in SERVICES:
        assert order[f"{s}-config"] > order[f"{s}-media"]


def test_every_node_gets_the_same_rpc_secret_as_a_key_never_a_store_path(cluster):
    members = cluster["members"]
    for n in NODES:
        keys = members[f"{n}-config"]["inputs"]["keys"]
        assert set(keys) == {"garage-rpc-secret", "garage-admin-token", "garage-metrics-token"}
        secret = keys["garage-rpc-secret"]
        assert secret["keyFile"] == RPC_SECRET_FILE and secret["text"] is None
        assert secret["user"] == "garage" and int(secret["permissions"], 8) & 0o077 == 0
        assert not secret["keyFile"].startswith("/nix/store")
    # The deployer's file is named only as the nodes' key, in no other member's inputs.
    text = json.dumps(members)
    assert text.count(RPC_SECRET_FILE) == len(NODES)
    assert "rpc_secret" not in text


def test_the_buckets_are_on_the_cluster_through_the_tunnel(cluster):
    members = cluster["members"]
    for b in BUCKETS:
        inputs = members[b]["inputs"]
        assert inputs["adminEndpoint"] == "http://127.0.0.1:3903"
        assert inputs["ssh"] == applied_outputs()["garage1-vm"]["ssh"]
        assert inputs["s3Endpoint"] == "http://192.0.2.21:3900"
    assert members["garage"]["inputs"]["ssh"] == applied_outputs()["garage1-vm"]["ssh"]
    text = json.dumps(members)
    for s in SERVICES:
        assert members[f"{s}-config"]["inputs"]["keys"][f"{s}-s3"]["text"] == secret_of(f"{s}-media")
        assert text.count(secret_of(f"{s}-media")) == 1


def test_every_input_is_valid_for_its_schema(cluster):
    types = schemas()
    checked = 0
    for name, resource in cluster["members"].items():
        if resource["type"] not in types:
            continue
        schema = copy.deepcopy(types[resource["type"]].wire_input_schema)
        jsonschema.validate(nulls.drop_nulls(resource["inputs"], schema), schema)
        checked += 1
    assert checked == 1 + 4 + 6 + 6


def test_the_state_file_stays_out_of_the_flake_source(cluster):
    name = cluster["members"]["state"]["inputs"]["name"]
    assert name.startswith("/") and not Path(name).is_relative_to(ROOT)
