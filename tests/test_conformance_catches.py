"""The conformance suite catches what Terraform's acceptance tests catch.

Each test serves a deliberately buggy type, and the suite must fail it, in the
step where the bug shows, with that step's name.  The correct type passes.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from fediversity_providers import NotFound, ProviderError, ResourceType, hookimpl
from fediversity_providers.testing import InProcessDriver, conformance
from fediversity_providers.testing.conformance import ConformanceFailure


class Note(ResourceType):
    """A correct type: a file holding ``text``, ``size`` times."""

    name = "test_note"
    input_schema = {
        "type": "object", "additionalProperties": False, "required": ["directory"],
        "properties": {"directory": {"type": "string"}, "text": {"type": "string", "default": "hi"},
                       "size": {"type": "integer", "default": 1}, "comment": {"type": "string"}},
    }
    output_schema = {"type": "object", "properties": {"content": {"type": "string"}, "size": {"type": "integer"}}}

    def path(self, inputs):
        return Path(inputs["directory"]) / "note.txt"

    def create(self, inputs, ctx):
        assert "comment" not in inputs  # NixOps4's null for it never reaches the plugin
        self.path(inputs).write_text(inputs["text"] * inputs["size"])
        return self.read_path(self.path(inputs))

    def read_path(self, path):
        if not path.exists():
            raise NotFound(f"{path} is gone")
        content = path.read_text()
        return {"content": content, "size": len(content) // 2}

    def read(self, resource, ctx):
        return self.read_path(self.path(resource.inputs))

    def update(self, resource, inputs, ctx):
        return self.create(inputs, ctx)

    def delete(self, resource, ctx):
        self.path(resource.inputs).unlink(missing_ok=True)


class IgnoresUpdate(Note):
    """Answers an update with the old outputs and changes nothing."""

    def update(self, resource, inputs, ctx):
        return resource.outputs


class DeleteFailsWhenGone(Note):
    def delete(self, resource, ctx):
        if not self.path(resource.inputs).exists():
            raise NotFound("there is nothing to delete")
        self.path(resource.inputs).unlink()


class UpdateFails(Note):
    def update(self, resource, inputs, ctx):
        raise ProviderError("the API said no")


class DeleteOnlyForgets(Note):
    """Deletes its bookkeeping, not the thing: a read says gone, the file stays."""

    def create(self, inputs, ctx):
        (Path(inputs["directory"]) / "marker").write_text("")
        return super().create(inputs, ctx)

    def read(self, resource, ctx):
        if not (Path(resource.inputs["directory"]) / "marker").exists():
            raise NotFound("gone")
        return super().read(resource, ctx)

    def delete(self, resource, ctx):
        (Path(resource.inputs["directory"]) / "marker").unlink(missing_ok=True)


class WritesTheWrongFile(Note):
    """Outputs look right, but the file on disk is not what was asked for."""

    def create(self, inputs, ctx):
        outputs = super().create(inputs, ctx)
        self.path(inputs).write_text("garbage")
        return outputs

    def read(self, resource, ctx):
        return resource.outputs  # cannot observe: trusts its records


def driver_for(cls):
    @hookimpl
    def register_resource_types(register):
        register(cls())

    return InProcessDriver([types.SimpleNamespace(register_resource_types=register_resource_types)],
                           entry_points=False)


def inputs(tmp_path):
    return {"directory": str(tmp_path)}, {"directory": str(tmp_path), "text": "yo", "size": 3}


def note_is_gone(inputs, outputs):
    assert not (Path(inputs["directory"]) / "note.txt").exists(), "note.txt is still there"


def file_matches(inputs, outputs):
    content = (Path(inputs["directory"]) / "note.txt").read_text()
    assert content == inputs["text"] * inputs["size"], f"note.txt holds {content!r}"


def test_the_correct_type_passes_every_check(tmp_path):
    with driver_for(Note) as driver:
        steps = conformance.check(driver, "test_note", *inputs(tmp_path), check_destroy=note_is_gone,
                                  checks={"create": [file_matches], "update": [file_matches]}, fresh_create=True)
    assert {"update takes effect", "delete when already gone", "check destroy", "create: file_matches",
            "update: file_matches", "update takes effect like a fresh create"} <= set(steps)


def test_an_update_that_ignores_the_new_inputs_is_caught(tmp_path):
    with driver_for(IgnoresUpdate) as driver:
        with pytest.raises(ConformanceFailure, match=r"step 'update takes effect': .*size: input 3, read 1"):
            conformance.check(driver, "test_note", *inputs(tmp_path))
        # Where no input is also an output, the fresh-create comparison catches it.
        with pytest.raises(ConformanceFailure, match="step 'update takes effect like a fresh create'"):
            conformance.check(driver, "test_note", {"directory": str(tmp_path)},
                              {"directory": str(tmp_path), "text": "yo"}, fresh_create=True)


def test_a_delete_that_fails_when_gone_is_caught(tmp_path):
    with driver_for(DeleteFailsWhenGone) as driver:
        with pytest.raises(ConformanceFailure, match=r"step 'delete when already gone': .*nothing to delete"):
            conformance.check(driver, "test_note", *inputs(tmp_path))


def test_a_failing_step_is_named(tmp_path):
    with driver_for(UpdateFails) as driver:
        with pytest.raises(ConformanceFailure, match=r"^step 'update': the provider answered an error: .*said no"):
            conformance.check(driver, "test_note", *inputs(tmp_path))
    assert not (tmp_path / "note.txt").exists()  # what was created is cleaned up


def test_check_destroy_catches_a_delete_that_leaves_the_thing(tmp_path):
    with driver_for(DeleteOnlyForgets) as driver:
        conformance.check(driver, "test_note", *inputs(tmp_path))  # the protocol alone cannot tell
        with pytest.raises(ConformanceFailure, match=r"step 'check destroy': .*note.txt is still there"):
            conformance.check(driver, "test_note", *inputs(tmp_path), check_destroy=note_is_gone)


def test_an_authors_check_catches_what_outputs_hide(tmp_path):
    with driver_for(WritesTheWrongFile) as driver:
        with pytest.raises(ConformanceFailure, match=r"step 'create': check file_matches failed: .*garbage"):
            conformance.check(driver, "test_note", *inputs(tmp_path), checks={"create": [file_matches]})
    with pytest.raises(ValueError, match="unknown steps"):
        conformance.check(driver_for(Note), "test_note", *inputs(tmp_path), checks={"crate": [file_matches]})
