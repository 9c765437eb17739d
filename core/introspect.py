"""What ``types``, ``plugins`` and ``schema`` print: for people, and as JSON for scripts."""

from __future__ import annotations

import json

from .plugins import Registry

__all__ = ["types_json", "types_table", "plugins_json", "plugins_table", "schema_json"]


def _types(registry: Registry) -> list[dict]:
    return [
        {
            "name": name,
            "description": reg.resource_type.summary,
            "requireState": reg.resource_type.requires_state,
            "plugin": reg.plugin,
            "distribution": reg.distribution,
        }
        for name, reg in sorted(registry.types.items())
    ]


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
        rows.append([t["name"], "required" if t["requireState"] else "-", t["description"]])
    return _table(rows) if len(rows) > 1 else "no resource types are registered"


def _plugins(registry: Registry) -> list[dict]:
    grouped: dict[tuple, list[str]] = {}
    for name, reg in sorted(registry.types.items()):
        grouped.setdefault((reg.plugin, reg.distribution), []).append(name)
    return [
        {"plugin": plugin, "distribution": dist, "builtin": dist == "fediversity-providers", "types": names}
        for (plugin, dist), names in sorted(grouped.items(), key=lambda item: (item[0][1] or "", item[0][0]))
    ]


def plugins_json(registry: Registry) -> str:
    return json.dumps(_plugins(registry), indent=2)


def plugins_table(registry: Registry) -> str:
    rows = [["PLUGIN", "DISTRIBUTION", "TYPES"]]
    for p in _plugins(registry):
        rows.append([p["plugin"], (p["distribution"] or "-") + (" (built-in)" if p["builtin"] else ""), ", ".join(p["types"])])
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
