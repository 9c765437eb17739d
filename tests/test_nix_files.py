"""nix-modules/: every file parses, the provider module is current and matches the registry,
the package, flake, lib and MVP example agree with pyproject.toml and the schemas.

All evaluation is Debian's Nix without nixpkgs (``--store dummy://``: no store writes).
The MVP example is evaluated with upstream NixOps4 in ``test_nix_mvp.py``; what needs the
whole of nixpkgs is checked by ``nix flake check`` (docs/nix.md).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fediversity_providers.core import nixmodule
from fediversity_providers.core.plugins import Registry
from fediversity_providers.testing.nixeval import FAKE_LIB, accepts, nix_eval, nix_parse, provider_module

ROOT = Path(__file__).resolve().parent.parent
NIX = ROOT / "nix-modules"
PROVIDER = NIX / "provider.nix"
BUILTIN_ONLY = {**os.environ, "FEDIVERSITY_PROVIDERS_PLUGINS": ""}  # no external plugins: the committed module


def builtin_types() -> dict:
    """The built-in registrations only: the committed module leaves external plugins out."""
    return {name: reg for name, reg in Registry().types.items() if reg.builtin}


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "fediversity_providers", *args],
                          capture_output=True, text=True, env=BUILTIN_ONLY, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def types_json():
    return json.loads(cli("types", "--json"))


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    return provider_module(PROVIDER, workdir=tmp_path_factory.mktemp("nix"))


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory):
    path = tmp_path_factory.mktemp("lib") / "fake-lib.nix"
    path.write_text(FAKE_LIB)
    return path


def all_nix_files() -> list[Path]:
    return sorted(p for p in NIX.rglob("*.nix"))


@pytest.mark.parametrize("path", all_nix_files(), ids=lambda p: str(p.relative_to(NIX)))
def test_every_nix_file_parses(path, tmp_path):
    nix_parse(path, workdir=tmp_path)


def test_the_expected_files_exist():
    names = {str(p.relative_to(NIX)) for p in all_nix_files()}
    assert {"provider.nix", "package.nix", "flake.nix", "lib.nix", "checks.nix", "nixos/garage-node.nix",
            "nixos/s3-client.nix", "nixos/keys.nix", "examples/mvp/flake.nix", "examples/mvp/deployment.nix",
            "examples/cluster/flake.nix", "examples/cluster/deployment.nix", "examples/cluster/machines.nix",
            "examples/cluster/nodes.nix"} <= names


def test_committed_provider_module_is_what_the_command_prints():
    fresh = cli("nix-module")
    current = PROVIDER.read_text()
    if fresh != current:
        diff = "".join(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True),
                                            "nix-modules/provider.nix (committed)", "fediversity-provider nix-module"))
        pytest.fail(f"nix-modules/provider.nix is out of date; regenerate it with\n    {nixmodule.COMMAND}\n\n{diff}",
                    pytrace=False)


def test_provider_module_types_equal_types_json(committed, types_json):
    assert committed["args"] == ["serve"]
    assert committed["executable"].endswith("/bin/fediversity-provider")
    evaluated = {name: {"description": rt["description"], "requireState": rt["requireState"]}
                 for name, rt in committed["resourceTypes"].items()}
    listed = {t["name"]: {"description": t["description"] or t["name"], "requireState": t["requireState"]}
              for t in types_json}
    assert evaluated == listed


def _compare(options: dict, schema: dict, path: str) -> int:
    """Option names and defaults equal the schema's properties, recursively; returns how many were compared."""
    properties = schema.get("properties") or {}
    assert sorted(options) == sorted(properties), path
    required = set(schema.get("required", ()))
    count = 0
    for name, prop in properties.items():
        option, where = options[name], f"{path}.{name}"
        count += 1
        if "default" in prop:
            assert option["hasDefault"] and option["default"] == prop["default"], where
        else:
            assert option["hasDefault"] == (name not in required), where
        option_type = option["type"]
        while option_type["name"] in ("nullOr", "listOf", "attrsOf"):
            option_type = option_type["elem"]
        nested = prop.get("items") if prop.get("type") == "array" else prop.get("additionalProperties") \
            if not prop.get("properties") else prop
        if option_type["name"] == "submodule" and isinstance(nested, dict) and nested.get("properties"):
            count += _compare(option_type["options"], nested, where)
    return count


def test_provider_module_options_equal_the_schemas(committed, types_json):
    compared = 0
    for entry in types_json:
        schema = json.loads(cli("schema", entry["name"]))
        rt = committed["resourceTypes"][entry["name"]]
        for side in ("inputs", "outputs"):
            compared += _compare(rt[side]["options"], schema[side], f"{entry['name']}.{side}")
    assert compared >= len(types_json)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(data=st.data())
def test_schema_valid_inputs_pass_the_committed_nix_types(committed, data):
    from hypothesis_jsonschema import from_schema

    types = builtin_types()
    name = data.draw(st.sampled_from(sorted(types)))
    schema = types[name].resource_type.input_schema
    value = data.draw(from_schema(schema))
    options = committed["resourceTypes"][name]["inputs"]["options"]
    assert accepts({"name": "submodule", "options": options, "freeformType": None}, value), (name, value)


# --------------------------------------------------------------------------- package and flake


FAKE_PKGS = """
let
  names = [ "attrs" "cattrs" "pluggy" "jsonschema" "filelock" "fabric" "minio" "setuptools" ];
  fakePackages = builtins.listToAttrs (map (n: { name = n; value = "<${n}>"; }) names);
in fakePackages // {
  lib = {
    fileset = { toSource = { root, fileset }: map toString fileset; unions = xs: xs; };
    makeBinPath = ps: builtins.concatStringsSep ":" (map (p: p + "/bin") ps);
    licenses.eupl12 = "EUPL-1.2";
    platforms.linux = [ "x86_64-linux" ];
  };
  buildPythonApplication = attrs: attrs;
  nix = "/nix/store/nix"; openssh = "/nix/store/openssh";
}
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    work = tmp_path_factory.mktemp("pkg")
    (work / "pkgs.nix").write_text(FAKE_PKGS)
    expression = (f"let pkgs = import {work}/pkgs.nix; f = import {PACKAGE}; "
                  f"in f (builtins.intersectAttrs (builtins.functionArgs f) pkgs)")
    return nix_eval(expression, workdir=work)


PACKAGE = NIX / "package.nix"


def _canonical(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_package_has_pyprojects_name_version_and_dependencies(package):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert package["pname"] == project["name"]
    assert package["version"] == project["version"]
    assert sorted(d.strip("<>") for d in package["dependencies"]) == sorted(map(_canonical, project["dependencies"]))
    assert package["build-system"] == ["<setuptools>"]
    assert package["meta"]["mainProgram"] in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_package_puts_nix_and_ssh_on_path(package):
    assert package["makeWrapperArgs"] == ["--prefix", "PATH", ":", "/nix/store/nix/bin:/nix/store/openssh/bin"]


def test_package_source_holds_every_package_directory(package):
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    sources = {Path(p).name for p in package["src"]}
    assert {Path(d).parts[0] for d in tool["package-dir"].values()} <= sources
    assert {"pyproject.toml", "README.md"} <= sources
    for path in package["src"]:
        assert Path(path).exists(), path
    for module in package["pythonImportsCheck"]:
        __import__(module)


FAKE_NIXPKGS = """
{
  lib.genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
  legacyPackages = builtins.listToAttrs (map (system: {
    name = system;
    value = {
      stdenv.hostPlatform.system = system;
      python3Packages.callPackage = path: args: {
        outPath = "/nix/store/00000000000000000000000000000000-fediversity-providers-${system}";
      };
      nix = null; openssh = null; nixfmt-rfc-style = null;
    };
  }) [ "x86_64-linux" "aarch64-linux" ]);
}
"""


@pytest.fixture(scope="module")
def flake(tmp_path_factory, fake_lib):
    work = tmp_path_factory.mktemp("flake")
    (work / "nixpkgs.nix").write_text(FAKE_NIXPKGS)
    expression = f"""
      let
        outputs = (import {NIX}/flake.nix).outputs {{ self = outputs; nixpkgs = import {work}/nixpkgs.nix; }};
        module = outputs.modules.nixops4Provider.fediversity {{ lib = import {fake_lib}; resourceProviderSystem = "aarch64-linux"; }};
      in {{
        packages = builtins.mapAttrs (_: ps: builtins.mapAttrs (_: p: p.outPath) ps) outputs.packages;
        nixosModules = builtins.attrNames outputs.nixosModules;
        checks = builtins.attrNames outputs;
        inherit (module) executable args;
        types = builtins.attrNames module.resourceTypes;
      }}"""
    return nix_eval(expression, workdir=work)


def test_flake_exposes_package_provider_module_and_nixos_modules(flake, committed):
    assert set(flake["packages"]) == {"x86_64-linux", "aarch64-linux"}
    assert flake["packages"]["x86_64-linux"]["default"] == flake["packages"]["x86_64-linux"]["fediversity-providers"]
    # The provider runs on the deployer: the package is the one for resourceProviderSystem.
    assert flake["executable"] == "/nix/store/00000000000000000000000000000000-fediversity-providers-aarch64-linux/bin/fediversity-provider"
    assert flake["args"] == ["serve"]
    assert flake["types"] == sorted(committed["resourceTypes"])
    assert flake["nixosModules"] == ["default", "garage-node", "keys", "s3-client"]
    assert {"packages", "modules", "nixosModules", "lib", "checks"} <= set(flake["checks"])


# --------------------------------------------------------------------------- lib and the MVP example


GARAGE_OUTPUTS = {
    "bucketId": "0" * 64, "globalAlias": "mastodon-media", "s3Endpoint": "http://192.0.2.10:3900",
    "region": "garage", "websiteEndpoint": None,
    "keys": {"mastodon": {"accessKeyId": "GK" + "1" * 24, "secretAccessKey": "s" * 64, "read": True,
                          "write": True, "owner": False, "created": True}},
}


def test_bucket_settings_reads_garage_bucket_outputs(tmp_path):
    settings_ = nix_eval(f"(import {NIX}/lib.nix).bucketSettings (builtins.fromJSON ''{json.dumps(GARAGE_OUTPUTS)}'') \"mastodon\"",
                         workdir=tmp_path)
    assert settings_ == {"endpoint": "http://192.0.2.10:3900", "region": "garage", "bucket": "mastodon-media",
                         "accessKeyId": "GK" + "1" * 24, "publicUrl": None}
    assert "secret" not in json.dumps(settings_).lower()
    types = builtin_types()
    if "garage_bucket" in types:  # the fields it reads are garage_bucket's outputs
        outputs = types["garage_bucket"].resource_type.output_schema
        assert {"s3Endpoint", "region", "globalAlias", "keys", "websiteEndpoint"} <= set(outputs["properties"])
        assert "accessKeyId" in outputs["properties"]["keys"]["additionalProperties"]["properties"]


def _optional_without_default(schema: dict, path: str):
    """Properties NixOps4 would send as null although the schema refuses null."""
    if not isinstance(schema, dict):
        return
    required = set(schema.get("required", ()))
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type")
        nullable = kind == "null" or (isinstance(kind, list) and "null" in kind) or None in prop.get("enum", [0])
        if name not in required and "default" not in prop and not nullable:
            yield f"{path}.{name}"
        yield from _optional_without_default(prop, f"{path}.{name}")
        yield from _optional_without_default(prop.get("items"), f"{path}.{name}[]")


def test_every_optional_input_has_a_default_or_accepts_null():
    """NixOps4 evaluates every input option and sends its value: an optional input without a
    default is `null` in the module, so the type's schema must accept null there."""
    offenders = [p for name, reg in sorted(builtin_types().items())
                 for p in _optional_without_default(reg.resource_type.input_schema, f"{name}.inputs")]
    assert offenders == [], "give these a default, or allow null: " + ", ".join(offenders)
