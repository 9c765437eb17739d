"""Replacement without delete: an ``x-replace-on-change`` input changed, and ``allowReplacement`` is set.

NixOps4 sends only an update, so the core replaces the resource inside it, for
every type: create then delete where old and new can coexist, otherwise
delete then create; a failure halfway names what exists now.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from fediversity_providers import NeedsReplacement, NotFound, ProviderError, ResourceType, hookimpl
from fediversity_providers.core import nixmodule
from fediversity_providers.core.plugins import Registry
from fediversity_providers.testing import InProcessDriver

from support import require_greeting_plugin


class Slot(ResourceType):
    """A file in a directory; old and new cannot coexist (one slot per ``group``)."""

    name = "test_slot"
    input_schema = {
        "type": "object", "additionalProperties": False, "required": ["group", "directory"],
        "properties": {
            "group": {"type": "string"},
            "directory": {"type": "string", "x-replace-on-change": True},
            "label": {"type": "string", "default": "slot"},
            "note": {"type": "string"},  # optional, no default: NixOps4 sends null
        },
    }
    output_schema = {"type": "object", "properties": {"path": {"type": "string"}, "label": {"type": "string"}}}
    fail_delete = False
    fail_create = False
    seen: list = []

    def _path(self, inputs):
        return Path(inputs["directory"]) / inputs["group"]

    def create(self, inputs, ctx):
        Slot.seen.append(dict(inputs))
        if Slot.fail_create:
            raise ProviderError("the disk is full")
        if any(p.name == inputs["group"] for p in Path(inputs["directory"]).parent.glob("*/*")):
            raise ProviderError(f"group {inputs['group']} is taken")
        path = self._path(inputs)
        path.write_text(inputs["label"])
        return {"path": str(path), "label": inputs["label"]}

    def read(self, resource, ctx):
        path = self._path(resource.inputs)
        if not path.exists():
            raise NotFound(f"{path} is gone")
        return {"path": str(path), "label": path.read_text()}

    def update(self, resource, inputs, ctx):
        return self._rewrite(inputs)

    def _rewrite(self, inputs):
        path = self._path(inputs)
        path.write_text(inputs["label"])
        return {"path": str(path), "label": inputs["label"]}

    def delete(self, resource, ctx):
        if Slot.fail_delete:
            raise ProviderError("the old slot is locked")
        self._path(resource.inputs).unlink(missing_ok=True)


class Twin(Slot):
    """The same, but old and new may exist at once: the new one is created first."""

    name = "test_twin"
    replacement_can_coexist = True

    def create(self, inputs, ctx):
        Slot.seen.append(dict(inputs))
        if Slot.fail_create:
            raise ProviderError("the disk is full")
        return self._rewrite(inputs)


@pytest.fixture
def driver():
    Slot.fail_delete = Slot.fail_create = False
    Slot.seen = []

    @hookimpl
    def register_resource_types(register):
        register(Slot())
        register(Twin())

    with InProcessDriver([types.SimpleNamespace(register_resource_types=register_resource_types)],
                         entry_points=False) as d:
        yield d


def dirs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    return str(a), str(b)


def test_without_opting_in_the_error_says_how(driver, tmp_path):
    a, b = dirs(tmp_path)
    inputs = {"group": "g", "directory": a}
    out = driver.create("test_slot", inputs)
    with pytest.raises(NeedsReplacement) as caught:
        driver.update("test_slot", inputs, out, {**inputs, "directory": b})
    message = str(caught.value)
    assert f'inputProperties.directory from "{a}" to "{b}"' in message  # JSON values, not Python's
    assert "set the input allowReplacement = true" in message and "inputs.allowReplacement = true;" in message
    assert "nothing was changed" in message
    assert driver.read("test_slot", inputs, out) == out


@pytest.mark.parametrize("type_name", ["test_slot", "test_twin"])
def test_replacement_returns_the_new_outputs_and_removes_the_old(driver, tmp_path, type_name):
    a, b = dirs(tmp_path)
    inputs = {"group": "g", "directory": a, "note": None}
    out = driver.create(type_name, inputs)
    new_inputs = {**inputs, "directory": b, "allowReplacement": True}
    new = driver.update(type_name, inputs, out, new_inputs)
    assert new == {"path": str(Path(b) / "g"), "label": "slot"}
    assert not (Path(a) / "g").exists() and (Path(b) / "g").exists()
    # The plugin saw neither the core's input nor the null.
    assert all("allowReplacement" not in seen and "note" not in seen for seen in Slot.seen)
    # Applying the same inputs again is an ordinary update.
    assert driver.update(type_name, new_inputs, new, new_inputs) == new


def test_delete_first_when_the_new_one_cannot_be_created(driver, tmp_path):
    a, b = dirs(tmp_path)
    inputs = {"group": "g", "directory": a}
    out = driver.create("test_slot", inputs)
    Slot.fail_create = True
    with pytest.raises(ProviderError) as caught:
        driver.update("test_slot", inputs, out, {**inputs, "directory": b, "allowReplacement": True})
    message = str(caught.value)
    assert "the old one was deleted, but creating the new one failed" in message and "the disk is full" in message
    assert "Nothing exists now; NixOps4 still records the old one" in message
    # Applying again (NixOps4 still sends the same update) finishes the job: deleting what is gone succeeds.
    Slot.fail_create = False
    new = driver.update("test_slot", inputs, out, {**inputs, "directory": b, "allowReplacement": True})
    assert Path(new["path"]).exists() and not (Path(a) / "g").exists()


def test_delete_first_when_the_old_one_cannot_be_deleted(driver, tmp_path):
    a, b = dirs(tmp_path)
    inputs = {"group": "g", "directory": a}
    out = driver.create("test_slot", inputs)
    Slot.fail_delete = True
    with pytest.raises(ProviderError, match="deleting the old one failed: .*locked; no new one was created"):
        driver.update("test_slot", inputs, out, {**inputs, "directory": b, "allowReplacement": True})
    assert (Path(a) / "g").exists() and not (Path(b) / "g").exists()


def test_create_first_undoes_the_new_one_when_the_old_one_stays(driver, tmp_path):
    a, b = dirs(tmp_path)
    inputs = {"group": "g", "directory": a}
    out = driver.create("test_twin", inputs)
    Slot.fail_delete = True
    with pytest.raises(ProviderError) as caught:
        driver.update("test_twin", inputs, out, {**inputs, "directory": b, "allowReplacement": True})
    message = str(caught.value)
    # The undo (deleting the new one) failed as well: both exist, and the message says how to clean up.
    assert "Both exist now" in message and str(Path(b) / "g") in message
    assert "fediversity-provider delete --type test_twin" in message
    assert (Path(a) / "g").exists() and (Path(b) / "g").exists()


def test_create_first_keeps_the_old_one_when_the_new_one_fails(driver, tmp_path):
    a, b = dirs(tmp_path)
    inputs = {"group": "g", "directory": a}
    out = driver.create("test_twin", inputs)
    Slot.fail_create = True
    with pytest.raises(ProviderError, match="creating the new one failed: .*the old one was not touched"):
        driver.update("test_twin", inputs, out, {**inputs, "directory": b, "allowReplacement": True})
    assert driver.read("test_twin", inputs, out) == out


def test_the_fixture_greeting_is_replaced_creating_first(tmp_path):
    require_greeting_plugin()
    a, b = dirs(tmp_path)
    with InProcessDriver() as driver:
        inputs = {"directory": a, "name": "Ann"}
        out = driver.create("greeting", inputs)
        new = driver.update("greeting", inputs, out, {"directory": b, "name": "Ann", "allowReplacement": True})
    assert new == {"path": str(Path(b) / "greeting.txt"), "text": "Hello, Ann!"}
    assert not Path(out["path"]).exists()


def test_the_opt_in_is_in_the_generated_nix_module_and_the_schema():
    registry = Registry()
    for name in ("proxmox_vm", "nixos_config"):
        wired = registry.get(name).wire_input_schema
        assert wired["properties"]["allowReplacement"]["default"] is False
        assert "allowReplacement" not in registry.get(name).input_schema["properties"]
    text = nixmodule.render(registry)
    assert text.count("allowReplacement = mkOption") >= 2
    committed = (Path(__file__).parents[1] / "nix-modules" / "provider.nix").read_text()
    assert "allowReplacement = mkOption" in committed
    # A type without replace-on-change inputs gets no such input.
    assert "allowReplacement" not in registry.get("existing_vm").wire_input_schema.get("properties", {})


def test_proxmox_vm_on_the_stub_is_replaced(tmp_path):
    from test_proxmox_stub import user_vms, vm_inputs

    with InProcessDriver() as driver:
        inputs = vm_inputs(tmp_path)
        out = driver.create("proxmox_vm", inputs)
        for field, value in (("template", "nixos-cloud"), ("fullClone", False)):
            with pytest.raises(NeedsReplacement, match="allowReplacement = true"):
                driver.update("proxmox_vm", inputs, out, {**inputs, field: value})
        new_inputs = {**inputs, "template": "nixos-cloud", "allowReplacement": True}
        new = driver.update("proxmox_vm", inputs, out, new_inputs)
        vms = user_vms(tmp_path)
        # Deleted first, so the new VM may take the old one's free vmid: it is a clone of the new template.
        assert list(vms) == [new["vmid"]], "the old VM is gone, the new one is the only one"
        assert vms[new["vmid"]]["clonedFrom"] == 9001
        assert driver.read("proxmox_vm", new_inputs, new) == new


def test_proxmox_vm_on_the_pve_emulator_is_replaced(pve_cluster):
    from test_proxmox_api import vm_inputs

    if pve_cluster.real:
        pytest.skip("the emulator's view of the cluster is what is checked")
    with InProcessDriver() as driver:
        inputs = vm_inputs(pve_cluster)
        out = driver.create("proxmox_vm", inputs)
        new_inputs = {**inputs, "fullClone": False, "allowReplacement": True}
        new = driver.update("proxmox_vm", inputs, out, new_inputs)
        deletes = [r for r in pve_cluster.emulator.requests if r[0] == "DELETE" and r[1].endswith(f"/qemu/{out['vmid']}")]
        clones = [r for r in pve_cluster.emulator.requests if r[0] == "POST" and r[1].endswith("/clone")]
        assert len(deletes) == 1 and len(clones) == 2  # the old VM destroyed, then a new one cloned
        assert set(pve_cluster.our_vms()) == {new["vmid"]}, "the old VM is gone, the new one is the only one"
        assert driver.read("proxmox_vm", new_inputs, new) == new
        driver.delete("proxmox_vm", new_inputs, new)
