"""Replacing a resource whose ``x-replace-on-change`` input changed, for every type.

NixOps4 never deletes a resource, and sends a changed input as an update.  An
input that cannot change in place (a VM's node, a template) therefore needs
the provider itself to replace the resource within that update: create the
new one and delete the old one, and answer with the new outputs.  Doing so
destroys something, so it happens only where the user opted in, with the
core's own input ``allowReplacement = true`` on the resource; without it the
update is refused with a message saying exactly that.

Plugins only declare: ``x-replace-on-change`` on the inputs, and
``ResourceType.replacement_can_coexist`` — whether the old and the new
resource can exist at once.  Then the new one is created first (no gap; a
failed create leaves the old one untouched), else the old one is deleted
first (nothing clashes).  A failure halfway is reported with what exists now.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from .errors import NeedsReplacement, ProviderError
from .schema import format_path, walk

__all__ = ["OPT_IN", "wire_schema", "split_core_inputs", "changed_fields", "refuse", "replace"]

#: The core's input that lets the provider replace a resource.
OPT_IN = "allowReplacement"

_wire_schemas: dict[tuple[int, bool], tuple[dict, dict]] = {}


def _marks_replacement(schema: Any) -> bool:
    if isinstance(schema, dict):
        return bool(schema.get("x-replace-on-change")) or any(_marks_replacement(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_marks_replacement(v) for v in schema)
    return False


def _opt_in_schema(coexist: bool) -> dict[str, Any]:
    order = ("creates the new resource, then deletes the old one" if coexist
             else "deletes the old resource, then creates the new one (both cannot exist at once)")
    return {
        "type": "boolean",
        "default": False,
        "description": (
            "Let the provider replace this resource when an input that cannot change in place "
            f"changes: within that update it {order}, and the outputs are the new one's. "
            "Without it such a change is refused and nothing is changed. "
            "Provided by fediversity-providers' core for every type with such inputs."
        ),
    }


def wire_schema(schema: dict[str, Any], coexist: bool) -> dict[str, Any]:
    """The inputs NixOps4 sends: ``schema`` plus :data:`OPT_IN` where something needs replacement.

    The same object for the same schema, so validators cached on it stay valid.
    """
    key = (id(schema), coexist)
    found = _wire_schemas.get(key)
    if found is not None and found[0] is schema:
        return found[1]
    wired = schema
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(properties, dict) and OPT_IN not in properties and _marks_replacement(properties):
        wired = {**schema, "properties": {**properties, OPT_IN: _opt_in_schema(coexist)}}
    _wire_schemas[key] = (schema, wired)
    return wired


def split_core_inputs(inputs: dict[str, Any], plugin_schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The plugin's inputs (without the core's own), and whether replacement is allowed."""
    if OPT_IN not in inputs or OPT_IN in (plugin_schema.get("properties") or {}):
        return inputs, False
    rest = {k: v for k, v in inputs.items() if k != OPT_IN}
    return rest, inputs[OPT_IN] is True


def changed_fields(old: dict[str, Any], new: dict[str, Any], schema: dict[str, Any]) -> list[tuple[str, Any, Any, bool]]:
    """Each changed ``x-replace-on-change`` input: (path, old value, new value, sensitive).

    Given on one side and absent on the other counts as a change too, where
    the object holding it is there on both sides.
    """
    def marked(value: Any) -> dict[tuple, tuple[Any, bool]]:
        return {path: (item, bool(sub.get("x-sensitive")))
                for path, item, sub in walk(value, schema) if sub.get("x-replace-on-change")}

    old_values, new_values = marked(old), marked(new)
    changed = []
    for path in sorted(set(old_values) | set(new_values), key=lambda p: [str(x) for x in p]):
        if not (_parent_present(old, path) and _parent_present(new, path)):
            continue
        before, sensitive = old_values.get(path, (None, False))
        after, sensitive_now = new_values.get(path, (None, False))
        if before != after:
            changed.append((format_path("inputProperties", path), before, after, sensitive or sensitive_now))
    return changed


def _parent_present(value: Any, path: tuple) -> bool:
    for part in path[:-1]:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(value, dict)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _describe_changes(changed: list[tuple[str, Any, Any, bool]]) -> str:
    parts = []
    for path, old, new, sensitive in changed:
        parts.append(f"{path} (a sensitive value)" if sensitive else f"{path} from {_json(old)} to {_json(new)}")
    return ", ".join(parts)


def refuse(changed: list[tuple[str, Any, Any, bool]], resource: str) -> NeedsReplacement:
    """The error for a replacement the user did not allow: how to allow it."""
    fields = [path for path, *_ in changed]
    return NeedsReplacement(
        f"changing {_describe_changes(changed)} cannot be done in place: the resource must be replaced, "
        f"and it is replaced only where allowed; nothing was changed",
        resource=resource,
        field=fields[0] if len(fields) == 1 else None,
        hint=(f"to replace it, set the input {OPT_IN} = true on this resource in the deployment "
              f"(NixOps4: inputs.{OPT_IN} = true;) and apply again; or keep the old value"),
    )


def _cause(error: BaseException) -> str:
    if isinstance(error, ProviderError):
        return str(error)
    return f"internal error: {type(error).__name__}: {error}"


def _runner_delete(type_name: str, inputs: dict[str, Any], outputs: Any) -> str:
    return (f"fediversity-provider delete --type {type_name} --inputs-json '{_json(inputs)}' "
            f"--outputs-json '{_json(outputs)}'")


def replace(
    type_name: str,
    coexist: bool,
    *,
    create: Callable[[], dict[str, Any]],
    delete_old: Callable[[], None],
    delete_new: Callable[[dict[str, Any]], None],
    new_inputs: dict[str, Any],
    changed: list[tuple[str, Any, Any, bool]],
    progress: Callable[[str, str], None],
) -> dict[str, Any]:
    """Replace the resource; the new outputs.  Every failure says what exists now."""
    what = _describe_changes(changed)
    if coexist:
        progress("replacing", f"{what}: creating the new resource first")
        try:
            outputs = create()
        except Exception as error:
            raise ProviderError(
                f"replacing the resource ({what}): creating the new one failed: {_cause(error)}; "
                "the old one was not touched and still exists, as NixOps4 records it",
                resource=type_name, hint="fix the cause and apply again",
            ) from error
        progress("replacing", "deleting the old resource")
        try:
            delete_old()
        except Exception as error:
            progress("replacing", "could not delete the old resource; deleting the new one again")
            try:
                delete_new(outputs)
            except Exception as undo_error:
                raise ProviderError(
                    f"replacing the resource ({what}): the new one was created, but deleting the old one "
                    f"failed: {_cause(error)}; deleting the new one again failed too: {_cause(undo_error)}. "
                    f"Both exist now. NixOps4 still records the old one; the new one's outputs are "
                    f"{_json(outputs)}",
                    resource=type_name,
                    hint=f"delete the new one with: {_runner_delete(type_name, new_inputs, outputs)}; "
                         "then fix the cause and apply again",
                ) from error
            raise ProviderError(
                f"replacing the resource ({what}): the new one was created, but deleting the old one "
                f"failed: {_cause(error)}; the new one was deleted again, so only the old one exists, "
                "as NixOps4 records it",
                resource=type_name, hint="fix the cause and apply again",
            ) from error
        return outputs
    progress("replacing", f"{what}: deleting the old resource first (old and new cannot exist at once)")
    try:
        delete_old()
    except Exception as error:
        raise ProviderError(
            f"replacing the resource ({what}): deleting the old one failed: {_cause(error)}; "
            "no new one was created, and NixOps4 still records the old one",
            resource=type_name, hint="fix the cause and apply again",
        ) from error
    progress("replacing", "creating the new resource")
    try:
        return create()
    except Exception as error:
        raise ProviderError(
            f"replacing the resource ({what}): the old one was deleted, but creating the new one failed: "
            f"{_cause(error)}. Nothing exists now; NixOps4 still records the old one",
            resource=type_name,
            hint="fix the cause and apply again: the old one is gone, so the update only creates the new one",
        ) from error
