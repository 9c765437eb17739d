"""The MVP example and the provider module, evaluated for real: upstream NixOps4's own nix/
(tests/reference/nixops4), the nixpkgs lib, the real NixOS module system with nixpkgs' Garage
module, and this repository's flakes.  Stand-ins only for packages and for what a NixOS
system builds (tests/nix/).

NixOps4's apply is simulated as it works: `rootFunction` is evaluated with the outputs of the
members applied so far, and every member whose inputs then evaluate is applied next.  The
example must deploy in one apply, in an order that works.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from support import example_bucket_outputs, example_config_outputs, example_secret_of, example_vm_outputs

from fediversity_providers.core import nixmodule, nulls
from fediversity_providers.core.plugins import Registry
from fediversity_providers.testing.nixeval import NixError, nix_eval

ROOT = Path(__file__).resolve().parent.parent
TESTNIX = ROOT / "tests" / "nix"
EXAMPLE = ROOT / "nix-modules" / "examples" / "mvp"
MACHINES = ("garage", "mastodon", "peertube", "pixelfed")
BUCKETS = ("mastodon-media", "peertube-media", "pixelfed-media", "peertube-private")


def schemas() -> dict:
    return {name: reg.resource_type for name, reg in Registry().types.items() if reg.builtin}



secret_of = example_secret_of


def applied_outputs() -> dict:
    """What each member's provider returns (shaped by the output schemas, checked below)."""
    outputs: dict = {"state": {}}
    for m in MACHINES:
        outputs[f"{m}-vm"] = example_vm_outputs(m, f"192.0.2.{10 + MACHINES.index(m)}")
        outputs[f"{m}-config"] = example_config_outputs(m)
    for b in BUCKETS:
        outputs[b] = example_bucket_outputs(b, "http://192.0.2.10:3900")
    return outputs


def evaluate(tmp: Path, outputs: dict) -> dict:
    (tmp / "outputs.json").write_text(json.dumps(outputs))
    expression = (f"import {TESTNIX}/mvp.nix {{ outputs = builtins.fromJSON (builtins.readFile {tmp}/outputs.json);"
                  " }")
    return nix_eval(expression, workdir=tmp)


@pytest.fixture(scope="module")
def mvp(tmp_path_factory):
    return evaluate(tmp_path_factory.mktemp("mvp"), applied_outputs())


def test_the_example_is_a_nixops4_root_from_mkroot(mvp):
    assert mvp["_type"] == "nixops4Component"
    expected = {"state", *BUCKETS, *(f"{m}-vm" for m in MACHINES), *(f"{m}-config" for m in MACHINES)}
    assert set(mvp["members"]) == expected


def test_the_machines_evaluate_as_nixos_systems(mvp):
    assert sorted(mvp["systems"]) == sorted(MACHINES)
    for name, toplevel in mvp["systems"].items():
        assert toplevel.startswith("/nix/store/") and toplevel.endswith(f"-nixos-system-{name}")
    deployed = {m: mvp["members"][f"{m}-config"]["inputs"]["toplevel"] for m in MACHINES}
    assert len(set(deployed.values())) == 4
    for m in ("mastodon", "peertube", "pixelfed"):  # with their bucket's settings, unlike the plain system
        assert deployed[m] != mvp["systems"][m]


def test_one_apply_deploys_everything_in_an_order_that_works(mvp):
    waves = mvp["waves"]
    order = {name: i for i, wave in enumerate(waves) for name in wave}
    assert set(order) == set(mvp["members"]), "some members never become ready: a cycle or a missing output"
    assert order["garage-config"] > order["garage-vm"]
    for b in BUCKETS:  # the buckets wait for Garage, whose admin API they reach through the tunnel
        assert order[b] > order["garage-config"]
    for service in ("mastodon", "peertube", "pixelfed"):
        assert order[f"{service}-config"] > order[f"{service}-media"]
    assert order["peertube-config"] > order["peertube-private"] > order["peertube-media"]


def test_resources_use_todays_nixops4_shape(mvp):
    members = mvp["members"]
    for name, resource in members.items():
        assert set(resource) == {"inputs", "outputsSkeleton", "provider", "state", "type"}, name
        assert resource["provider"]["type"] == "stdio"
    for b in BUCKETS:
        assert members[b]["state"] == ["state"]  # a member reference, resolved to its path
        assert members[b]["type"] == "garage_bucket"
    assert members["state"]["type"] == "state_file"
    assert members["state"]["provider"]["executable"].endswith("/bin/nixops4-resources-local")
    fediversity = members["garage-vm"]["provider"]
    assert fediversity["args"] == ["serve"] and fediversity["executable"].endswith("/bin/fediversity-provider")
    assert set(members["garage-config"]["outputsSkeleton"]) == {"toplevel", "generation", "previousToplevel", "keys"}


def test_every_input_is_valid_for_its_schema(mvp):
    types = schemas()
    checked = 0
    for name, resource in mvp["members"].items():
        if resource["type"] not in types:
            continue
        # What the core checks: the schema NixOps4 talks to (with the core's own
        # inputs, such as allowReplacement), nulls of unset options dropped.
        schema = copy.deepcopy(types[resource["type"]].wire_input_schema)
        jsonschema.validate(nulls.drop_nulls(resource["inputs"], schema), schema)
        checked += 1
    assert checked == 12


def test_outputs_given_match_the_output_schemas():
    types = schemas()
    kinds = {"vm": "existing_vm", "config": "nixos_config", "media": "garage_bucket", "private": "garage_bucket"}
    for name, outputs in applied_outputs().items():
        if name != "state":
            jsonschema.validate(outputs, types[kinds[name.split("-")[-1]]].output_schema)


def test_each_bucket_secret_goes_to_its_machine_as_a_key_and_nowhere_else(mvp):
    members = mvp["members"]
    text = json.dumps(members)
    for service in ("mastodon", "peertube", "pixelfed"):
        secret = secret_of(f"{service}-media")
        keys = members[f"{service}-config"]["inputs"]["keys"]
        assert keys[f"{service}-s3"]["text"] == secret
        assert keys[f"{service}-s3"]["uploadAt"] == "pre-activation"
        assert text.count(secret) == 1, "the secret appears outside its key"
    assert secret_of("peertube-private") not in text
    for name, resource in members.items():
        for key in resource["inputs"]:
            assert "secret" not in key.lower() or key.endswith("File"), (name, key)


def test_the_garage_node_gets_its_secrets_as_keys_owned_by_garage(mvp):
    keys = mvp["members"]["garage-config"]["inputs"]["keys"]
    assert set(keys) == {"garage-rpc-secret", "garage-admin-token", "garage-metrics-token"}
    for key in keys.values():
        assert key["user"] == "garage" and key["text"] is None and key["keyFile"].startswith("/")
        assert int(key["permissions"], 8) & 0o077 == 0  # Garage refuses group or other bits


def test_buckets_reach_the_admin_api_through_the_tunnel_and_serve_websites(mvp):
    members = mvp["members"]
    for b in BUCKETS:
        inputs = members[b]["inputs"]
        assert inputs["adminEndpoint"] == "http://127.0.0.1:3903"
        assert inputs["ssh"] == applied_outputs()["garage-vm"]["ssh"]
        assert inputs["website"]["enable"] is (b != "peertube-private")
    assert members["peertube-private"]["inputs"]["keys"][0]["accessKeyId"] == "GK" + "1" * 24


def test_the_state_file_stays_out_of_the_flake_source(mvp):
    name = mvp["members"]["state"]["inputs"]["name"]
    assert name.startswith("/") and not Path(name).is_relative_to(EXAMPLE)
    assert not Path(name).is_relative_to(ROOT)


def test_the_old_nixops4_api_is_refused(tmp_path):
    """The NixOps4 this repository is tested with has no `resources` option: a root using it fails."""
    expression = f"""
      let
        lib = import {ROOT}/tests/reference/nixpkgs-lib/lib;
        nixops4 = import {TESTNIX}/nixops4.nix {{ inherit lib; pkgs = import {TESTNIX}/pkgs.nix {{ inherit lib; }}; }};
        root = nixops4.lib.mkRoot {{ modules = [ {{ resources.x = {{ }}; }} ]; }};
      in builtins.deepSeq (root.rootFunction {{ resourceProviderSystem = "x86_64-linux"; outputValues = {{ }}; }}) true
    """
    with pytest.raises(NixError, match="resources"):
        nix_eval(expression, workdir=tmp_path)
    for path in EXAMPLE.rglob("*.nix"):
        text = path.read_text()
        for old in ("mkDeployment", "nixops4Deployments", 'state = "state"', "config.resources"):
            assert old not in text, (path, old)


def test_a_broken_deployment_fails_the_evaluation(tmp_path):
    outputs = applied_outputs()
    del outputs["mastodon-media"]["keys"]["mastodon"]  # e.g. a renamed key entry
    with pytest.raises(NixError, match="attribute 'mastodon' missing"):
        evaluate(tmp_path, outputs)


def test_provider_docs_render_with_upstream_render_provider_docs(tmp_path):
    expression = f"""
      let
        lib = import {ROOT}/tests/reference/nixpkgs-lib/lib;
        pkgs = import {TESTNIX}/pkgs.nix {{ inherit lib; }};
        nixops4 = import {TESTNIX}/nixops4.nix {{ inherit lib pkgs; }};
      in nixops4.lib.renderProviderDocs {{
        system = "x86_64-linux";
        module = import {ROOT}/nix-modules/provider.nix {{ executable = "/nix/store/x-fp/bin/fediversity-provider"; }};
      }}
    """
    docs = nix_eval(expression, workdir=tmp_path)
    assert f"# {nixmodule.PROVIDER_NAME}" in docs and nixmodule.PROVIDER_DESCRIPTION in docs
    assert f"provider-docs-{nixmodule.SOURCE_NAME}" in docs
    for name in schemas():
        assert f"- [{name}](./{name}.md)" in docs and f"# {name}" in docs
    assert "inputs.ssh.hostPublicKey (string)" in docs


def test_every_key_file_a_machine_reads_is_a_key_its_config_uploads(mvp):
    """The paths the example's NixOS configurations read (and wait for) are destDir/<name> of its keys."""
    import re

    members = mvp["members"]
    uploaded = {}
    for m in MACHINES:
        keys = members[f"{m}-config"]["inputs"]["keys"]
        uploaded[m] = {f"{key.get('destDir') or '/run/keys'}/{name}" for name, key in keys.items()}
    read = {m: set() for m in MACHINES}
    for source in ("machines.nix", "deployment.nix"):
        for path in re.findall(r'"(/run/keys/[^"]+)"', (EXAMPLE / source).read_text()):
            users = [s for s in MACHINES if s != "garage"] if "${service}" in path else \
                [m for m in MACHINES if path.split("/")[-1].startswith(m)]
            for m in users:
                read[m].add(path.replace("${service}", m))
    for m in MACHINES:
        assert read[m] == uploaded[m], m
