"""Plugin discovery: entry points, built-ins like externals, clashes, limits, the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fediversity_providers import PluginError, ResourceType, hookimpl
from fediversity_providers.core import entrypoints
from fediversity_providers.core.plugins import BUILTIN_DISTRIBUTION, Registry
from fediversity_providers.testing import InProcessDriver, conformance

from support import require_greeting_plugin


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fediversity_providers", *args],
                          capture_output=True, text=True, env=env, timeout=60)


class Twin(ResourceType):
    name = "greeting"
    input_schema = output_schema = {"type": "object"}

    def create(self, inputs, ctx):
        return {}


class TwinPlugin:
    @hookimpl
    def register_resource_types(self, register):
        register(Twin())


def test_external_plugin_is_found_through_its_entry_point_and_served(tmp_path):
    require_greeting_plugin()
    plugins = json.loads(cli("plugins", "--json").stdout)
    greeting = next(p for p in plugins if "greeting" in p["types"])
    assert greeting == {"plugin": "greeting", "distribution": "greeting-plugin", "builtin": False,
                        "types": ["greeting", "greeting_journal"], "problems": []}
    steps = conformance.check(InProcessDriver(), "greeting", {"directory": str(tmp_path), "name": "A"},
                              {"directory": str(tmp_path), "name": "B", "greeting": "Hi"})
    assert steps[-1] == "read after delete says not found"


def test_builtin_providers_come_through_the_same_entry_point_group():
    found = entrypoints.discover("fediversity_providers")
    builtin = {ep.name for ep in found if ep.distribution == BUILTIN_DISTRIBUTION}
    assert "proxmox_vm" in builtin
    for ep in found:
        if ep.distribution == BUILTIN_DISTRIBUTION:
            assert ep.value == f"fediversity_providers.providers.{ep.name}"


def test_duplicate_type_names_are_refused_naming_both_plugins_and_break_only_that_type():
    require_greeting_plugin()
    registry = Registry([TwinPlugin()])
    with pytest.raises(PluginError) as caught:
        registry.get("greeting")
    message = str(caught.value)
    assert "'greeting' is provided twice" in message
    assert "plugin 'greeting' (greeting-plugin)" in message
    assert "plugin 'test_core_plugins.TwinPlugin' (not installed)" in message
    assert "greeting" not in registry.types
    assert registry.get("greeting_journal").name == "greeting_journal"  # the rest is served


def test_an_environment_variable_limits_external_plugins():
    require_greeting_plugin()
    env = dict(os.environ, FEDIVERSITY_PROVIDERS_PLUGINS="")
    types = {t["name"] for t in json.loads(cli("types", "--json", env=env).stdout)}
    assert "greeting" not in types and "proxmox_vm" in types
    env["FEDIVERSITY_PROVIDERS_PLUGINS"] = "greeting-plugin"
    types = {t["name"] for t in json.loads(cli("types", "--json", env=env).stdout)}
    assert "greeting" in types


def test_entry_point_cache_is_used_while_valid_and_refreshed_when_sys_path_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("FEDIVERSITY_PROVIDERS_NO_CACHE", raising=False)
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    first = entrypoints.discover("fediversity_providers")
    cache = Path(entrypoints._cache_path("fediversity_providers"))
    assert cache.is_relative_to(tmp_path)
    document = json.loads(cache.read_text())
    # A cache entry the scan would never produce proves the cache is what answered.
    document["entryPoints"].append(["planted", "nowhere:x", "planted-dist"])
    cache.write_text(json.dumps(document))
    assert any(ep.name == "planted" for ep in entrypoints.discover("fediversity_providers"))
    (site / "unrelated-file").write_text("")  # not metadata: the cache stays valid
    assert any(ep.name == "planted" for ep in entrypoints.discover("fediversity_providers"))
    (site / "new_dist-1.0.dist-info").mkdir()  # an install adds metadata
    refreshed = entrypoints.discover("fediversity_providers")
    assert not any(ep.name == "planted" for ep in refreshed)
    assert {ep.name for ep in refreshed} == {ep.name for ep in first}


def test_a_plugin_that_fails_to_import_is_named_and_breaks_only_itself(monkeypatch):
    from fediversity_providers.core import plugins

    broken = entrypoints.EntryPoint("broken", "no_such_module_anywhere", "broken-dist")
    real = plugins.discover
    monkeypatch.setattr(plugins, "discover", lambda group: [broken, *real(group)])
    registry = Registry()
    assert registry.get("proxmox_vm").name == "proxmox_vm"
    with pytest.raises(PluginError) as caught:
        registry.get("no_such_type")
    message = str(caught.value)
    assert "plugin 'broken' (broken-dist) is broken: cannot be imported (no_such_module_anywhere)" in message
    assert "ModuleNotFoundError" in message and "may be the one that provides this type" in message


def test_types_schema_and_plugins_commands():
    table = cli("types")
    assert table.returncode == 0 and table.stdout.startswith("TYPE")
    listed = json.loads(cli("types", "--json").stdout)
    assert all(set(t) == {"name", "description", "requireState", "plugin", "distribution", "problems"}
               for t in listed)
    schema = json.loads(cli("schema", "proxmox_vm").stdout)
    assert schema["title"] == "proxmox_vm" and schema["inputs"]["type"] == "object"
    unknown = cli("schema", "nope")
    assert unknown.returncode == 1 and "unknown resource type 'nope'" in unknown.stderr and unknown.stdout == ""
