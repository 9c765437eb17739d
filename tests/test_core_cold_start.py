"""Cold start is NixOps4's hot path: serve imports nothing heavy until a request needs it.

Measured by what the interpreter reports importing (``-X importtime``), not by
timing: the figures live in benchmarks/.
"""

from __future__ import annotations

import json
import subprocess
import sys

from support import SERVE, require_greeting_plugin

HEAVY = ("fabric", "paramiko", "invoke", "minio", "urllib3", "hypothesis", "requests", "boto3", "botocore",
         "cryptography", "moto", "filelock")


def imported_modules(args, stdin=b""):
    done = subprocess.run([sys.executable, "-X", "importtime", *args], input=stdin, capture_output=True, timeout=60)
    names = set()
    for line in done.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return done, names


def test_serve_with_no_request_imports_neither_jsonschema_nor_any_heavy_library():
    done, names = imported_modules(SERVE[1:])
    assert done.returncode == 0
    assert "fediversity_providers.core.server" in names  # the check can see our own modules
    for heavy in (*HEAVY, "jsonschema"):
        assert heavy not in names, f"serve imported {heavy} before any request"


def test_a_valid_request_imports_nothing_heavy_and_an_invalid_one_brings_jsonschema_to_explain(tmp_path):
    require_greeting_plugin()
    request = {"createResourceRequest": {"type": "greeting", "isStateful": True,
                                         "inputProperties": {"directory": str(tmp_path), "name": "A"}}}
    done, names = imported_modules(SERVE[1:], (json.dumps(request) + "\n").encode())
    assert b"createResourceResponse" in done.stdout
    loaded = sorted(h for h in (*HEAVY, "jsonschema", "attrs", "cattrs", "logging") if h in names)
    assert not loaded, f"a greeting create imported {loaded}"
    request["createResourceRequest"]["inputProperties"]["name"] = "not valid"
    done, names = imported_modules(SERVE[1:], (json.dumps(request) + "\n").encode())
    assert b"does not match" in done.stdout
    assert "jsonschema" in names


def test_introspection_does_not_import_the_validator():
    done, names = imported_modules(["-m", "fediversity_providers", "types", "--json"])
    assert done.returncode == 0 and "jsonschema" not in names
