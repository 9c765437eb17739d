"""Helpers shared by the core's own tests (not part of the kit)."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from importlib import resources
from pathlib import Path

from fediversity_providers.core.plugins import Registry
from fediversity_providers.testing.prereq import require

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = Path(__file__).parent / "reference"
SERVE = [sys.executable, "-m", "fediversity_providers", "serve"]


@cache
def protocol_validator():
    from jsonschema.validators import validator_for

    schema = json.loads(resources.files("fediversity_providers.schemas").joinpath("protocol.json").read_text())
    return validator_for(schema)(schema)


def assert_protocol_message(value: object) -> None:
    errors = list(protocol_validator().iter_errors(value))
    assert not errors, f"{value!r} is not a protocol message: {errors[0].message}"


def require_greeting_plugin() -> None:
    require("greeting" in Registry().types,
            "the fixture plugin is not installed: pip install -e tests/fixtures/greeting-plugin")


def serve_lines(lines: list[bytes], *, env=None, args=()) -> tuple[list[bytes], bytes, int]:
    """Feed raw lines to a fresh serve process; return (stdout lines, stderr, status)."""
    done = subprocess.run([*SERVE, *args], input=b"".join(lines), capture_output=True, env=env, timeout=60)
    return done.stdout.splitlines(keepends=True), done.stderr, done.returncode


# -- what the example deployments' members return once applied (tests/test_nix_*.py) -------------
def example_secret_of(bucket: str) -> str:
    """A recognisable stand-in for ``bucket``'s secret access key."""
    return f"SECRET-{bucket}-0123456789abcdef"


def example_vm_outputs(name: str, host: str) -> dict:
    """An existing_vm's outputs for machine ``name`` at ``host``."""
    return {"ssh": {"host": host, "port": 22, "user": "root", "hostPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEBAQEB",
                    "privateKeyFile": "/k", "connectTimeout": 10},
            "hostname": name, "system": "x86_64-linux", "kernel": "6.6", "os": {"id": "nixos", "versionId": "25.05"},
            "nixos": True, "nixVersion": "2.24.0", "cpus": 2, "memoryBytes": 2**31}


def example_config_outputs(name: str) -> dict:
    """A nixos_config's outputs for machine ``name``."""
    return {"toplevel": f"/nix/store/{'1' * 32}-nixos-system-{name}", "generation": 1, "previousToplevel": None,
            "keys": {}}


def example_bucket_outputs(bucket: str, s3_endpoint: str) -> dict:
    """A garage_bucket's outputs for ``bucket`` (``<service>-…``), with one key for its service."""
    service = bucket.split("-")[0]
    return {"bucketId": "0" * 64, "globalAlias": bucket, "s3Endpoint": s3_endpoint, "region": "garage",
            "keys": {service: {"accessKeyId": "GK" + "1" * 24, "secretAccessKey": example_secret_of(bucket),
                               "read": True, "write": True, "owner": False, "created": True}},
            "quotas": {"maxSize": None, "maxObjects": None},
            "website": {"enable": bucket != "peertube-private", "indexDocument": "index.html", "errorDocument": None},
            "websiteEndpoint": None if bucket == "peertube-private" else f"http://{bucket}.web.example.org",
            "cors": [], "lifecycle": []}
