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
