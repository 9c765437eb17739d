"""The distribution: its licence, its metadata, and an sdist whose tests run."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: What the tests need beside the packages, and what a reader of the sdist expects.
NEEDED = ["LICENSE", "README.md", "CHANGELOG.md", "tests/support.py", "tests/fixtures", "tests/reference",
          "docs", "nix-modules", "scripts", "benchmarks", "schemas"]


def test_the_licence_is_the_eupl_text_and_the_metadata_says_so():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("EUROPEAN UNION PUBLIC LICENCE v. 1.2")
    assert "Appendix" in text and len(text) > 12_000
    meta = metadata.metadata("fediversity-providers")
    assert meta["License-Expression"] == "EUPL-1.2"
    urls = dict(value.split(", ", 1) for value in meta.get_all("Project-URL"))
    assert urls["Homepage"].startswith("https://")


def _files_under(root: Path, name: str) -> set[str]:
    path = root / name
    if path.is_file():
        return {name}
    return {str(p.relative_to(root)) for p in path.rglob("*")
            if p.is_file() and not any(part in ("__pycache__", ".hypothesis", "build") or part.endswith(".egg-info")
                                       for part in p.parts)}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"],
                   cwd=REPO, check=True, capture_output=True)
    (archive,) = out.glob("fediversity_providers-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    (tree,) = [p for p in out.iterdir() if p.is_dir()]
    return tree


def test_the_sdist_carries_everything_its_tests_need(sdist):
    missing = set()
    for name in NEEDED:
        missing |= _files_under(REPO, name) - _files_under(sdist, name)
    assert not missing, f"not in the sdist: {sorted(missing)[:20]}"


def test_the_sdists_tests_collect_as_the_checkouts_do(sdist):
    def collected(root: Path) -> list[str]:
        result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                 "tests"], cwd=root, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        return sorted(line for line in result.stdout.splitlines() if "::" in line)

    assert collected(sdist) == collected(REPO)


def test_the_testing_extra_holds_exactly_what_the_kit_imports():
    from importlib.metadata import requires

    extra = sorted(r.split(";")[0].split(">")[0].split("<")[0].split("=")[0].strip()
                   for r in requires("fediversity-providers") if 'extra == "testing"' in r)
    assert extra == ["hypothesis", "hypothesis-jsonschema", "pytest"]


@pytest.mark.parametrize("module", ["pytest", "hypothesis", "hypothesis_jsonschema"])
def test_the_kit_without_its_extra_names_the_extra(module):
    import subprocess
    import sys

    code = f"import sys; sys.modules[{module!r}] = None; import fediversity_providers.testing"
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pip install 'fediversity-providers[testing]'" in done.stderr and module in done.stderr


def test_a_provider_subprocess_does_not_serve_a_checkout_in_the_current_directory(tmp_path):
    import json
    import subprocess
    import sys

    # A directory that looks like the package: run from it, `python -m` would import it first.
    shadow = tmp_path / "fediversity_providers"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise SystemExit('the checkout was imported')\n")
    (shadow / "__main__.py").write_text("raise SystemExit('the checkout was imported')\n")
    done = subprocess.run([sys.executable, "-P", "-m", "fediversity_providers", "create", "--type", "proxmox_vm"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "the checkout was imported" not in done.stderr
    from fediversity_providers.core.client import default_provider_argv
    assert "-P" in default_provider_argv()
    line = subprocess.run([*default_provider_argv()], input=json.dumps(
        {"createResourceRequest": {"type": "nope", "inputProperties": {}, "isStateful": False}}) + "\n",
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "unknown resource type 'nope'" in line.stdout
