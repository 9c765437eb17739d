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


class NoSchema(ResourceType):
    name = "no_schema"

    def create(self, inputs, ctx):
        return {}


class BadJsonSchema(ResourceType):
    name = "bad_json_schema"
    input_schema = {"type": "object", "properties": {"name": {"type": "strin"}}}
    output_schema = {"type": "object"}

    def create(self, inputs, ctx):
        return {}


class NoCreate(ResourceType):
    name = "no_create"
    input_schema = output_schema = {"type": "object"}


class KebabName(NoCreate):
    name = "bad-type"

    def create(self, inputs, ctx):
        return {}


class MisplacedMarks(KebabName):
    name = "misplaced_marks"
    input_schema = {"type": "object", "properties": {
        "ssh": {"type": "object", "properties": {"host": {"type": "string", "x-replace-on-change": True}}},
        "token": {"type": "string", "x-sensitive": "yes"},
        "x-sensitive": True,
    }}
    output_schema = {"type": "object", "properties": {"id": {"type": "string", "x-replace-on-change": True}}}


class StateStoreWithoutState(KebabName):
    name = "half_store"
    is_state_store = True


BROKEN_TYPES = {
    "no_schema": "input_schema cannot be loaded (FileNotFoundError",
    "bad_json_schema": "input_schema.properties.name.type is not valid JSON Schema: 'strin' is not valid",
    "no_create": "NoCreate does not implement `create`: define create() on the class",
    "bad-type": "the type name 'bad-type' is not snake_case",
    "misplaced_marks": "input_schema.properties.ssh.properties.host: x-replace-on-change means something only on a "
                       "top-level input property",
    "half_store": "does not implement `state_read`",
}


@pytest.mark.parametrize("type_name", sorted(BROKEN_TYPES))
def test_a_broken_type_is_reported_with_what_to_fix_and_its_plugin(type_name):
    cls = next(c for c in (NoSchema, BadJsonSchema, NoCreate, KebabName, MisplacedMarks, StateStoreWithoutState)
               if c.name == type_name)
    with pytest.raises(PluginError) as caught:
        InProcessDriver([cls()], entry_points=False)
    message = str(caught.value)
    assert BROKEN_TYPES[type_name] in message
    assert f"plugin 'test_core_plugins.{cls.__qualname__}' (not installed)" in message
    assert str(id(cls)) not in message


def test_misplaced_marks_are_each_named():
    registry = Registry([MisplacedMarks()], entry_points=False)
    (failure,) = registry.check()
    problems = "\n".join(failure.problems)
    assert "input_schema.properties.token.x-sensitive: must be true or false, not 'yes'" in problems
    assert "input_schema.properties: 'x-sensitive' is written as a property name" in problems
    assert "output_schema.properties.id: x-replace-on-change means something only" in problems


def test_serve_checks_cheaply_on_first_use_and_a_broken_type_breaks_only_itself(tmp_path):
    require_greeting_plugin()
    driver_registry = Registry([NoCreate(), BadJsonSchema()])
    from fediversity_providers.core.engine import Engine

    engine = Engine(driver_registry)
    kind, body = engine.handle("createResourceRequest", {"type": "no_create", "inputProperties": {},
                                                          "isStateful": True})
    assert kind == "errorResponse" and "does not implement `create`" in body["message"]
    kind, body = engine.handle("createResourceRequest", {"type": "bad_json_schema", "inputProperties": {"name": 1},
                                                          "isStateful": True})
    assert kind == "errorResponse" and "'strin' is not valid" in body["message"]
    assert "plugin 'test_core_plugins.BadJsonSchema' (not installed)" in body["message"]
    kind, body = engine.handle("createResourceRequest", {"type": "greeting", "isStateful": True,
                                                          "inputProperties": {"directory": str(tmp_path), "name": "A"}})
    assert kind == "createResourceResponse"


def greeting_module():
    import greeting_plugin

    return greeting_plugin


@pytest.mark.parametrize("form", ["module", "plugin object", "resource type", "resource type class"])
def test_in_process_driver_accepts_modules_plugin_objects_and_resource_types(tmp_path, form):
    require_greeting_plugin()
    module = greeting_module()
    plugin = {"module": module, "plugin object": TwinPlugin(), "resource type": module.Greeting(),
              "resource type class": module.Greeting}[form]
    expected_name = {"module": "greeting_plugin", "plugin object": "test_core_plugins.TwinPlugin",
                     "resource type": "greeting_plugin.Greeting", "resource type class": "greeting_plugin.Greeting"}
    driver = InProcessDriver([plugin], entry_points=False)
    registration = driver.engine.registry.types["greeting"]
    assert registration.plugin == expected_name[form]
    if form != "plugin object":
        assert driver.create("greeting", {"directory": str(tmp_path), "name": "A"})["text"] == "Hello, A!"


def test_an_object_without_the_hook_is_refused_not_silently_ignored():
    with pytest.raises(PluginError) as caught:
        InProcessDriver([object()], entry_points=False)
    assert "plugin 'builtins.object' (not installed) is broken: has no register_resource_types hook" in str(caught.value)


def write_broken_distribution(site: Path, how: str) -> None:
    """An installed distribution whose plugin is broken: it fails to import, or registers a bad type."""
    (site / "brokenplug-1.0.dist-info").mkdir(parents=True)
    (site / "brokenplug-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 1.0\n")
    (site / "brokenplug-1.0.dist-info" / "entry_points.txt").write_text("[fediversity_providers]\nbroken = brokenplug\n")
    body = {
        "import": "raise ImportError('the plugin needs libfoo, which is missing')\n",
        "register": ("from fediversity_providers import ResourceType, hookimpl\n"
                     "class Bad(ResourceType):\n    name = 'bad_thing'\n"
                     "    input_schema = {'type': 'object', 'properties': {'a': {'type': 'strin'}}}\n"
                     "    output_schema = {'type': 'object'}\n"
                     "    def create(self, inputs, ctx):\n        return {}\n"
                     "@hookimpl\ndef register_resource_types(register):\n    register(Bad())\n"),
    }[how]
    (site / "brokenplug.py").write_text(body)


@pytest.mark.parametrize("how", ["import", "register"])
def test_an_installed_broken_plugin_breaks_only_itself_under_serve_types_and_plugins(tmp_path, how):
    require_greeting_plugin()
    site = tmp_path / "site"
    write_broken_distribution(site, how)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
               FEDIVERSITY_PROVIDERS_NO_CACHE="1")
    requests = [
        {"createResourceRequest": {"type": "greeting", "isStateful": True,
                                   "inputProperties": {"directory": str(tmp_path), "name": "A"}}},
        {"createResourceRequest": {"type": "bad_thing", "isStateful": True, "inputProperties": {"a": 1}}},
    ]
    done = subprocess.run([sys.executable, "-m", "fediversity_providers", "serve"], env=env, capture_output=True,
                          input="".join(json.dumps(r) + "\n" for r in requests).encode(), timeout=60)
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert "createResourceResponse" in first, first
    message = second["errorResponse"]["message"]
    assert "plugin 'broken' (brokenplug)" in message
    assert ("the plugin needs libfoo" if how == "import" else "'strin' is not valid") in message

    types = cli("types", env=env)
    plugins_listing = json.loads(cli("plugins", "--json", env=env).stdout)
    broken = next(p for p in plugins_listing if p["plugin"] == "broken")
    assert types.returncode == 0 and "BROKEN" in types.stdout and "greeting" in types.stdout
    assert broken["problems"] and broken["distribution"] == "brokenplug"
    check = cli("plugins", "--check", env=env)
    assert check.returncode == 1
    assert check.stdout.startswith("plugin 'broken' (brokenplug): ")
    clean = cli("plugins", "--check")
    assert clean.returncode == 0 and clean.stdout.startswith("no problems found in ")


def test_a_plugin_registering_one_name_twice_breaks_that_type_only():
    class Twice:
        @hookimpl
        def register_resource_types(self, register):
            register(Twin())
            register(Twin())
            register(KebabName.__mro__[1]())  # NoCreate: broken on its own

    registry = Registry([Twice()], entry_points=False)
    assert "greeting" not in registry.types
    problems = " ".join(p for f in registry.failures for p in f.problems)
    assert "registers the type 'greeting' twice" in problems and "does not implement `create`" in problems


def test_plugins_check_lists_every_problem_of_a_type():
    class Everything(ResourceType):
        name = "every-thing"
        input_schema = {"type": "object", "properties": {"a": {"type": "strin", "x-sensitive": "yes"}}}
        output_schema = {"type": "object"}

    from fediversity_providers.core import introspect

    report, clean = introspect.plugins_check(Registry([Everything()], entry_points=False))
    assert not clean
    assert "'every-thing' is not snake_case" in report and "does not implement `create`" in report
    assert "x-sensitive: must be true or false" in report and "'strin' is not valid" in report
    Everything.name = "every_thing"
    Everything.create = lambda self, inputs, ctx: {}
    report, clean = introspect.plugins_check(Registry([Everything()], entry_points=False))
    lines = report.splitlines()
    assert any("x-sensitive: must be true or false" in line for line in lines)
    assert any("'strin' is not valid" in line for line in lines)
    assert all(line.startswith("plugin 'test_core_plugins.") and ".Everything' (not installed): every_thing: " in line
               for line in lines), lines
