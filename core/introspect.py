"""What ``types``, ``plugins`` and ``schema`` print: for people, and as JSON for scripts."""

from __future__ import annotations

import json

from .plugins import Registry, plugin_label

__all__ = ["types_json", "types_table", "plugins_json", "plugins_table", "plugins_check", "schema_json"]


def _types(registry: Registry) -> list[dict]:
    """Every type, broken ones too (with their ``problems``), so that a failure is visible."""
    failures = registry.check(full=False)
    rows = [
        {
            "name": name,
            "description": reg.resource_type.summary,
            "requireState": reg.resource_type.requires_state,
            "plugin": reg.plugin,
            "distribution": reg.distribution,
            "problems": [],
        }
        for name, reg in registry.types.items()
    ]
    broken: dict[str, dict] = {}
    for failure in failures:
        for name in failure.types:
            row = broken.setdefault(name, {"name": name, "description": "", "requireState": None,
                                           "plugin": failure.plugin, "distribution": failure.distribution,
                                           "problems": []})
            row["problems"].extend(failure.problems)
    return sorted([*rows, *broken.values()], key=lambda row: row["name"])


def _unloaded(registry: Registry) -> list[str]:
    return [f"{failure.message()}" for failure in registry.failures if not failure.types]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )


def types_json(registry: Registry) -> str:
    return json.dumps(_types(registry), indent=2)


def types_table(registry: Registry) -> str:
    rows = [["TYPE", "STATE", "DESCRIPTION"]]
    for t in _types(registry):
        description = f"BROKEN: {'; '.join(t['problems'])}" if t["problems"] else t["description"]
        rows.append([t["name"], "required" if t["requireState"] else "-", description])
    text = _table(rows) if len(rows) > 1 else "no resource types are registered"
    return "\n".join([text, *(f"BROKEN: {line}" for line in _unloaded(registry))])


def _plugins(registry: Registry, *, full: bool = False) -> list[dict]:
    failures = registry.check(full=full)
    grouped: dict[tuple, list[str]] = {}
    problems: dict[tuple, list[str]] = {}
    for name, reg in sorted(registry.types.items()):
        grouped.setdefault((reg.plugin, reg.distribution), []).append(name)
    for failure in failures:
        key = (failure.plugin, failure.distribution)
        grouped.setdefault(key, [])
        prefix = f"{', '.join(failure.types)}: " if failure.types else ""
        problems.setdefault(key, []).extend(prefix + problem for problem in failure.problems)
    return [
        {"plugin": plugin, "distribution": dist, "builtin": dist == "fediversity-providers", "types": names,
         "problems": problems.get((plugin, dist), [])}
        for (plugin, dist), names in sorted(grouped.items(), key=lambda item: (item[0][1] or "", item[0][0]))
    ]


def plugins_check(registry: Registry) -> tuple[str, bool]:
    """Every problem of every plugin, all checks run; and whether there is none."""
    plugins = _plugins(registry, full=True)
    lines = [
        f"{plugin_label(p['plugin'], p['distribution'])}: {problem}" for p in plugins for problem in p["problems"]
    ]
    if not lines:
        return f"no problems found in {len(plugins)} plugins", True
    return "\n".join(lines), False


def plugins_json(registry: Registry) -> str:
    return json.dumps(_plugins(registry), indent=2)


def plugins_table(registry: Registry) -> str:
    rows = [["PLUGIN", "DISTRIBUTION", "TYPES"]]
    for p in _plugins(registry):
        types = ", ".join(p["types"])
        if p["problems"]:
            types = (types + " " if types else "") + f"BROKEN: {'; '.join(p['problems'])}"
        rows.append([p["plugin"], (p["distribution"] or "-") + (" (built-in)" if p["builtin"] else ""), types])
    return _table(rows) if len(rows) > 1 else "no plugins are registered"


def schema_json(registry: Registry, type_name: str) -> str:
    rtype = registry.get(type_name)
    document = {
        "title": rtype.name,
        "description": rtype.summary,
        "requireState": rtype.requires_state,
        "inputs": rtype.wire_input_schema,
        "outputs": rtype.output_schema,
    }
    return json.dumps(document, indent=2)
