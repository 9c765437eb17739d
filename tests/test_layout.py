"""The package's shape: no import circles, a core that names no provider, test kits where they belong.

These read the source (``ast``) of every module the distribution installs,
found through ``pyproject.toml``'s ``packages`` and ``package-dir``; each
checker is also run on a planted violation, so that it is known to be able to
fail.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = re.compile(r"garage|proxmox|pve", re.IGNORECASE)


# -- the modules the distribution installs ------------------------------------------------------

def package_dirs() -> dict[str, Path]:
    """Import name of every package -> its folder, as setuptools maps them."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = tool["package-dir"]
    found = {}
    for package in tool["packages"]:
        base = max((name for name in mapping if package == name or package.startswith(name + ".")), key=len)
        rest = package[len(base):].lstrip(".")
        found[package] = ROOT / mapping[base] / Path(*rest.split(".")) if rest else ROOT / mapping[base]
    return found


def modules(packages: dict[str, Path]) -> dict[str, Path]:
    """Import name -> source file of every module directly in the given packages."""
    found = {}
    for package, folder in packages.items():
        for path in sorted(folder.glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


# -- import circles -----------------------------------------------------------------------------

def import_graph(sources: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``sources`` it imports, wherever in its body the import statement is.

    Module-level, function-level and ``if TYPE_CHECKING:`` imports all count.
    A function-level import only postpones the circle to run time, and a
    type-only one still means neither module can be read, moved or tested
    without the other: the design circle is there either way, and hiding it
    inside a function is how such circles usually start.  The implicit import
    of a parent package (``import a.b`` runs ``a/__init__``) does not count:
    every module would otherwise sit in a circle with the root package, whose
    ``__init__`` re-exports the public API.
    """
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        package = name if path.stem == "__init__" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                    edges.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in sources else target)
        graph[name] = {edge for edge in edges if edge in sources and edge != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_nothing_in_the_package_imports_in_a_circle():
    sources = modules(package_dirs())
    assert "fediversity_providers.core.wire" in sources and len(sources) > 60  # the walk sees the package
    found = circles(import_graph(sources))
    assert not found, "modules that import each other in a circle (move the shared part to a third module):\n" + \
        "\n".join(" <-> ".join(c) for c in found)


def test_the_circle_check_finds_a_planted_circle(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from .a import A\n")
    (tmp_path / "pkg" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\nA = 1\n")
    (tmp_path / "pkg" / "b.py").write_text("from . import a\n")
    (tmp_path / "pkg" / "c.py").write_text("def f():\n    from pkg import b\n")
    sources = modules({"pkg": tmp_path / "pkg"})
    assert circles(import_graph(sources)) == [["pkg.a", "pkg.b", "pkg.c"]]
    (tmp_path / "pkg" / "d.py").write_text("")
    (tmp_path / "pkg" / "c.py").write_text("def f():\n    import pkg.d\n")  # runs pkg/__init__: not counted
    assert circles(import_graph(modules({"pkg": tmp_path / "pkg"}))) == []


# -- the core names no provider -----------------------------------------------------------------

def provider_names(path: Path) -> list[str]:
    """Where a module names a built-in provider outside docstrings, comments and ``help=`` texts."""
    tree = ast.parse(path.read_text(), str(path))
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                allowed.add(id(body[0].value))
        elif isinstance(node, ast.keyword) and node.arg in ("help", "description", "epilog"):
            allowed.update(id(sub) for sub in ast.walk(node.value))
    found = []
    if BUILT_IN.search(path.name):
        found.append(f"{path.name}: the file's name")
    for node in ast.walk(tree):
        texts: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in allowed:
            texts.append(node.value)
        elif isinstance(node, ast.Name):
            texts.append(node.id)
        elif isinstance(node, ast.Attribute):
            texts.append(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            texts.append(node.name)
        elif isinstance(node, ast.arg):
            texts.append(node.arg)
        elif isinstance(node, ast.alias):
            texts.extend(filter(None, (node.name, node.asname)))
        elif isinstance(node, ast.ImportFrom):
            texts.append(node.module or "")
        found.extend(f"{path.name}:{node.lineno}: {text!r}" for text in texts if BUILT_IN.search(text))
    return found


def test_the_core_names_no_built_in_provider():
    core = package_dirs()["fediversity_providers.core"]
    files = sorted(core.rglob("*.py"))
    assert len(files) > 20  # core/ and core/testing/
    found = [hit for path in files for hit in provider_names(path)]
    assert not found, "the core names a built-in provider (only docstring and help-text examples may):\n" + \
        "\n".join(found)


def test_the_provider_name_check_finds_planted_names(tmp_path):
    clean = tmp_path / "clean.py"
    clean.write_text('"""Run e.g. ``--type proxmox_vm``."""\n# garage_bucket is one\n'
                     'def f(parser):\n    """For pve."""\n    parser.add_argument("--type", help="e.g. garage_bucket")\n')
    assert provider_names(clean) == []
    planted = tmp_path / "planted.py"
    planted.write_text('from fediversity_providers.providers.garage_bucket import testing\n'
                       'DEFAULT = "proxmox_vm"\ndef f(pve_host):\n    return f"{pve_host}"\n')
    hits = provider_names(planted)
    assert any("'fediversity_providers.providers.garage_bucket'" in h for h in hits), hits
    assert any("'proxmox_vm'" in h for h in hits) and any("'pve_host'" in h for h in hits), hits
    named = tmp_path / "garage_emulator.py"
    named.write_text("")
    assert provider_names(named) == ["garage_emulator.py: the file's name"]


# -- each provider's test environment -----------------------------------------------------------

ENTRY_POINTS = {
    "fediversity_providers": "fediversity_providers.testing.pytest_plugin",
    "fediversity_providers_garage_bucket": "fediversity_providers.providers.garage_bucket.testing.fixtures",
    "fediversity_providers_garage_cluster": "fediversity_providers.providers.garage_cluster.testing.fixtures",
    "fediversity_providers_proxmox_vm": "fediversity_providers.providers.proxmox_vm.testing.fixtures",
}


def fixtures_of(module_name: str) -> set[str]:
    """The names of the fixtures a plugin module defines (a fixture may be renamed with ``name=``)."""
    found = set()
    for attribute, value in vars(importlib.import_module(module_name)).items():
        marker = getattr(value, "_fixture_function_marker", None) or getattr(value, "_pytestfixturefunction", None)
        if marker is not None:
            found.add(marker.name or attribute)
    return found


def test_each_test_environment_comes_through_its_own_entry_point(pytestconfig):
    declared = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")
                if ep.name.startswith("fediversity_providers")}
    assert declared == ENTRY_POINTS
    for name in ENTRY_POINTS:
        assert pytestconfig.pluginmanager.has_plugin(name), f"pytest did not load the plugin {name}"
    generic = fixtures_of(ENTRY_POINTS["fediversity_providers"])
    assert {"provider_driver", "provider_subprocess", "ssh_hosts"} <= generic
    assert not [name for name in generic if BUILT_IN.search(name)], generic
    assert fixtures_of(ENTRY_POINTS["fediversity_providers_garage_bucket"]) == {"garage", "garage_emulator", "garage_s3"}
    assert fixtures_of(ENTRY_POINTS["fediversity_providers_proxmox_vm"]) == {"pve_emulator", "pve_cluster"}
    assert fixtures_of(ENTRY_POINTS["fediversity_providers_garage_cluster"]) == {"garage_cluster"}


def test_the_readme_architecture_names_every_core_module_and_every_entry_points_fixtures():
    readme = (ROOT / "README.md").read_text()
    architecture = readme[readme.index("## Architecture"):]
    architecture = architecture[:architecture.index("\n## ", 1)]
    core = package_dirs()["fediversity_providers.core"]
    for module in sorted(path.stem for path in core.glob("*.py") if path.stem != "__init__"):
        assert re.search(rf"\b{module}\b", architecture), f"README's Architecture section does not name core/{module}"
    for entry_point, module in ENTRY_POINTS.items():
        assert f"`{entry_point}`" in architecture, entry_point
        for fixture in fixtures_of(module):
            assert f"`{fixture}`" in architecture, f"README's Architecture section does not list {fixture}"


# -- reference documents ------------------------------------------------------------------------

@pytest.mark.parametrize("env", ["FEDIVERSITY_GARAGE_OPENAPI_DIR", "FEDIVERSITY_PVE_APIDOC"])
def test_reference_documents_come_from_the_repository(env, monkeypatch, tmp_path):
    from fediversity_providers.providers.garage_bucket.testing import openapi
    from fediversity_providers.providers.proxmox_vm.testing import apischema

    monkeypatch.delenv(env, raising=False)
    monkeypatch.chdir(tmp_path)  # found from the installed checkout, not from where pytest runs
    assert openapi.reference_dir() == ROOT / "tests" / "reference" / "garage"
    assert apischema.apidoc_path() == ROOT / "tests" / "reference" / "proxmox" / "pve-apidoc.json"
    monkeypatch.setenv(env, str(tmp_path / "elsewhere"))
    found = openapi.reference_dir() if env == openapi.ENV else apischema.apidoc_path()
    assert found == tmp_path / "elsewhere"
