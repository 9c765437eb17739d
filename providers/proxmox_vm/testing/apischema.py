"""Proxmox VE's API schema (``pve-apidoc.json``) as a checker of requests and answers.

Used by the emulator in :mod:`.emulator`: every request a client sends is
checked for path, method, parameter names, types, enums, required parameters
and the property strings of ``net0`` and friends; every answer the emulator
gives is checked against the request's ``returns``.  The document is found
through ``$FEDIVERSITY_PVE_APIDOC``, else at the repository's verbatim copy,
``tests/reference/proxmox/pve-apidoc.json``.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fediversity_providers.testing.reference import reference_path

__all__ = ["ApiSchema", "apidoc_path", "load", "APIDOC_ENV"]

APIDOC_ENV = "FEDIVERSITY_PVE_APIDOC"
BOOLEANS = {"0", "1", "true", "false", "on", "off", "yes", "no"}
_IPCONFIG_ITEM = r"(ip=(dhcp|\d+\.\d+\.\d+\.\d+/\d+)|gw=\d+\.\d+\.\d+\.\d+|ip6=(dhcp|auto|\S+)|gw6=\S+)"
IPCONFIG = re.compile(rf"{_IPCONFIG_ITEM}(,{_IPCONFIG_ITEM})*")
TAGS = re.compile(r"[a-z0-9_][a-z0-9_\-+.]*([;, ][a-z0-9_][a-z0-9_\-+.]*)*")


def apidoc_path() -> Path | None:
    """Where ``pve-apidoc.json`` is: the environment variable, else the repository's ``tests/reference/``."""
    path = reference_path("proxmox", "pve-apidoc.json", env=APIDOC_ENV)
    return path if path.is_file() or os.environ.get(APIDOC_ENV) else None


# -- the API schema ---------------------------------------------------------------------------

def _perl_pattern(pattern: str) -> str:
    match = re.fullmatch(r"\(\?\^\w*:(.*)\)", pattern, re.S)
    return match.group(1) if match else pattern


class ApiSchema:
    """Proxmox VE's API schema: which requests exist, and what their parameters must look like."""

    def __init__(self, path: Path) -> None:
        self.routes: list[tuple[re.Pattern, int, str, dict, list[str]]] = []
        for root in json.loads(path.read_text()):
            self._walk(root)

    def _walk(self, node: dict) -> None:
        segments = node["path"].strip("/").split("/")
        regex = "/".join("([^/]+)" if s.startswith("{") else re.escape(s) for s in segments)
        literal = sum(not s.startswith("{") for s in segments)
        names = [s[1:-1] for s in segments if s.startswith("{")]
        self.routes.append((re.compile("/" + regex), literal, node["path"], node.get("info", {}), names))
        for child in node.get("children") or []:
            self._walk(child)

    def match(self, path: str) -> tuple[str, dict, dict[str, str]] | None:
        best = None
        for regex, literal, template, info, names in self.routes:
            found = regex.fullmatch(path)
            if found and (best is None or literal > best[0]):
                best = (literal, template, info, dict(zip(names, found.groups())))
        return best[1:] if best else None

    def check(self, method: str, path: str, params: dict[str, str]) -> list[str]:
        """What is wrong with this request by the schema; empty when nothing is."""
        matched = self.match(path)
        if matched is None:
            return [f"no such path in the API: {path}"]
        template, info, path_params = matched
        if method not in info:
            return [f"{template} has no {method} (only {', '.join(sorted(info))})"]
        properties = info[method].get("parameters", {}).get("properties", {})
        everything = {**{k: unquote(v) for k, v in path_params.items()}, **params}
        errors = []
        for name, value in everything.items():
            spec = properties.get(name) or properties.get(re.sub(r"\d+$", "[n]", name))
            if spec is None:
                errors.append(f"{method} {template}: unknown parameter {name!r}")
                continue
            problem = self._check_value(spec, value)
            if problem:
                errors.append(f"{method} {template}: parameter {name}={value!r}: {problem}")
        for name, spec in properties.items():
            if not spec.get("optional") and "[n]" not in name and name not in everything:
                errors.append(f"{method} {template}: required parameter {name!r} missing")
        return errors

    def check_answer(self, method: str, path: str, data: Any) -> list[str]:
        """What is wrong with an answer's ``data`` by the ``returns`` schema of its request."""
        matched = self.match(path)
        if matched is None or method not in matched[1]:
            return []
        returns = matched[1][method].get("returns") or {}
        return [f"answer to {method} {matched[0]}: {problem}" for problem in self._check_data(returns, data, "data")]

    def _check_data(self, spec: dict, data: Any, where: str) -> list[str]:
        kind = spec.get("type")
        if data is None:
            return [] if kind in (None, "null") or spec.get("optional") else [f"{where} is null, not {kind}"]
        expected = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
                    "boolean": (bool, int)}.get(kind)
        if expected is None:
            return []
        if not isinstance(data, expected) or (kind in ("integer", "number") and isinstance(data, bool)):
            return [f"{where} is {type(data).__name__}, not {kind}"]
        if kind == "string" and "enum" in spec and data not in spec["enum"]:
            return [f"{where} = {data!r} is not one of {spec['enum']}"]
        problems = []
        if kind == "object":
            for name, sub in (spec.get("properties") or {}).items():
                if name in data:
                    problems += self._check_data(sub, data[name], f"{where}.{name}")
                elif not sub.get("optional"):
                    problems.append(f"{where}.{name} is missing")
        elif kind == "array" and isinstance(spec.get("items"), dict):
            for index, item in enumerate(data):
                problems += self._check_data(spec["items"], item, f"{where}[{index}]")
        return problems

    def _check_value(self, spec: dict, value: str) -> str | None:
        kind = spec.get("type", "string")
        if kind == "integer":
            if not re.fullmatch(r"-?\d+", value):
                return "not an integer"
            number = int(value)
            if "minimum" in spec and number < spec["minimum"] or "maximum" in spec and number > spec["maximum"]:
                return f"out of range [{spec.get('minimum')}, {spec.get('maximum')}]"
        elif kind == "number":
            try:
                float(value)
            except ValueError:
                return "not a number"
        elif kind == "boolean":
            if value.lower() not in BOOLEANS:
                return "not a boolean (0/1)"
        elif kind == "string":
            if "enum" in spec and value not in spec["enum"]:
                return f"not one of {spec['enum']}"
            if "maxLength" in spec and len(value) > spec["maxLength"]:
                return f"longer than {spec['maxLength']}"
            if "pattern" in spec and not re.fullmatch(_perl_pattern(spec["pattern"]), value):
                return f"does not match {spec['pattern']}"
            fmt = spec.get("format")
            if isinstance(fmt, dict):
                return self._check_property_string(fmt, value)
            if fmt == "urlencoded" and not re.fullmatch(r"[A-Za-z0-9%._~*'()!-]*", value):
                return "not URL-encoded (spaces must be %20, not '+' or ' ')"
            if fmt == "pve-vmid" and not re.fullmatch(r"\d+", value):
                return "not a vmid"
            if fmt == "pve-qm-ipconfig" and not IPCONFIG.fullmatch(value):
                return "not an ipconfig (ip=dhcp or ip=CIDR, optionally ,gw=IP; ip6/gw6 likewise)"
            if fmt == "pve-tag-list" and not TAGS.fullmatch(value):
                return "not a tag list"
        return None

    def _check_property_string(self, fmt: dict, value: str) -> str | None:
        default_key = next((k for k, v in fmt.items() if v.get("default_key")), None)
        for index, part in enumerate(value.split(",")):
            key, sep, item = part.partition("=")
            if not sep:
                if index == 0 and default_key:
                    key, item = default_key, part
                else:
                    return f"{part!r} is not key=value"
            sub = fmt.get(key)
            if sub is None:
                return f"unknown key {key!r}"
            if "keyAlias" in sub:
                continue  # e.g. net0's "virtio=MAC"
            if "alias" in sub:
                sub = fmt.get(sub["alias"], {})
            problem = self._check_value({k: v for k, v in sub.items() if k != "format" or isinstance(v, str)}, item)
            if problem:
                return f"{key}: {problem}"
        return None

@functools.cache
def load(path: str) -> ApiSchema:
    """The schema in ``path``, parsed once per process."""
    return ApiSchema(Path(path))
