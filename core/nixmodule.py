"""The NixOps4 provider module, generated from the resource types' JSON Schemas.

``fediversity-provider nix-module`` prints what :func:`render` returns: a Nix
file that is a function of the package, returning a NixOps4 provider module::

    import ./provider.nix { package = fediversity-providers; }
    # => { lib, ... }: { name = ...; description = ...; sourceBaseUrl = ...; sourceName = ...;
    #                     executable = ...; args = [ "serve" ]; resourceTypes = { ... }; }

Every registered type becomes ``resourceTypes.<type>`` with ``description``,
``requireState`` and ``inputs``/``outputs`` modules whose options follow the
schemas.  JSON Schema maps onto NixOS option types like this:

==========================================  =======================================
JSON Schema                                 Nix option type
==========================================  =======================================
``string`` / ``integer`` / ``number``       ``types.str`` / ``types.int`` / ``types.number``
``boolean``                                 ``types.bool``
``enum`` / ``const``                        ``types.enum [ ... ]``
``["T", "null"]``, ``null`` in an enum      ``types.nullOr T``
``array`` with ``items``                    ``types.listOf T``
``object`` with ``properties``              ``types.submodule { options = ...; }``
``object`` with only ``additionalProperties``  ``types.attrsOf T``
``oneOf`` / ``anyOf``                       ``types.oneOf [ ... ]`` (``nullOr`` for a null branch)
local ``$ref``                              the referenced schema, inlined
anything else                               ``types.anything``
==========================================  =======================================

A property's ``default`` becomes the option's ``default``.  A property that is
neither required nor defaulted becomes ``nullOr`` with ``default = null``
(NixOps4 evaluates every option, so an unset one must have a value).
Value constraints (``pattern``, ``minimum``, lengths) stay with the provider,
which checks them and names the field at fault.  ``x-sensitive`` and
``x-replace-on-change`` are noted in the option's description; a type with
``x-replace-on-change`` inputs also gets the core's ``allowReplacement``
option (see :mod:`.replacement`).  Properties are
sorted by name and types by name, so the output is deterministic.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["render", "nix_string", "nix_value", "COMMAND", "PROVIDER_NAME", "PROVIDER_DESCRIPTION", "SOURCE_NAME",
           "SOURCE_BASE_URL"]

#: The command that prints the committed ``nix-modules/provider.nix``.
COMMAND = "FEDIVERSITY_PROVIDERS_PLUGINS= fediversity-provider nix-module > nix-modules/provider.nix"

# The provider's documentation metadata: NixOps4's provider module declares
# `name`, `description`, `sourceBaseUrl` and `sourceName` without defaults, and
# `lib.renderProviderDocs` reads them.
PROVIDER_NAME = "Fediversity providers"
PROVIDER_DESCRIPTION = (
    "Resources for the Fediversity hosting platform, from fediversity-providers and its plugins "
    "(a Python suite speaking NixOps4's resource protocol)."
)
SOURCE_NAME = "fediversity-providers"
#: Where links to option declarations point; `provider.nix` takes `sourceBaseUrl` to change it.
SOURCE_BASE_URL = "https://git.fediversity.eu/Fediversity/fediversity-providers/src/branch/main"

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_'-]*$")
_KEYWORDS = frozenset({"assert", "else", "if", "in", "inherit", "let", "or", "rec", "then", "with"})
_SIMPLE = {"string": "types.str", "integer": "types.int", "number": "types.number", "boolean": "types.bool"}

SENSITIVE_NOTE = (
    "Sensitive: a secret. NixOps4 keeps it in its state; never interpolate it into a "
    "derivation or a NixOS option, which would copy it into the world-readable Nix store."
)
REPLACE_NOTE = (
    "Changing it replaces the resource (it cannot change in place), which is done only "
    "where allowReplacement = true; otherwise the change is refused."
)
UNSET_NOTE = "Optional: null leaves it unset."


# --------------------------------------------------------------------------- Nix literals


def nix_string(text: str) -> str:
    """``text`` as a double-quoted Nix string literal."""
    out = []
    for i, ch in enumerate(text):
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "$" and text[i + 1 : i + 2] == "{":
            out.append("\\$")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def nix_name(name: str) -> str:
    """An attribute name, quoted unless it is a plain identifier."""
    return name if _IDENT.match(name) and name not in _KEYWORDS else nix_string(name)


def _paren(expression: str) -> str:
    """``expression`` as a function argument: parenthesised unless it is one token."""
    return expression if re.fullmatch(r"[A-Za-z0-9_.]+", expression) else f"({expression})"


def _nix_float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value!r} has no Nix literal")
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    text = mantissa + (e + exponent if e else "")
    return f"({text})" if text.startswith("-") else text


def nix_value(value: Any, indent: str = "") -> str:
    """A JSON value as a Nix expression (attribute sets and lists span lines)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"({value})" if value < 0 else str(value)
    if isinstance(value, float):
        return _nix_float(value)
    if isinstance(value, str):
        return nix_string(value)
    inner = indent + "  "
    if isinstance(value, list):
        if not value:
            return "[ ]"
        items = [nix_value(item, inner) for item in value]
        if all("\n" not in item for item in items) and sum(len(i) + 1 for i in items) < 60:
            return "[ " + " ".join(items) + " ]"
        return "[\n" + "".join(f"{inner}{item}\n" for item in items) + indent + "]"
    if isinstance(value, dict):
        if not value:
            return "{ }"
        lines = [f"{inner}{nix_name(k)} = {nix_value(value[k], inner)};\n" for k in sorted(value)]
        return "{\n" + "".join(lines) + indent + "}"
    raise TypeError(f"{type(value).__name__} is not a JSON value")


# --------------------------------------------------------------------------- schema -> option types


class _Translator:
    """Turns one document's schemas into option expressions; resolves its local ``$ref``s."""

    def __init__(self, root: dict[str, Any], where: str) -> None:
        self.root = root
        self.where = where
        self._resolving: list[str] = []

    def _deref(self, schema: dict[str, Any]) -> dict[str, Any] | None:
        ref = schema["$ref"]
        if not ref.startswith("#/") or ref in self._resolving:
            return None  # remote or recursive: not expressible as a finite option type
        target: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ValueError(f"{self.where}: $ref {ref!r} points nowhere")
            target = target[part]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return merged

    def type_of(self, schema: Any, indent: str) -> str:
        """The option type expression for ``schema``; continuation lines start at ``indent``."""
        if schema is True or schema == {} or not isinstance(schema, dict):
            return "types.anything"
        if "$ref" in schema:
            ref = schema["$ref"]
            target = self._deref(schema)
            if target is None:
                return "types.anything"
            self._resolving.append(ref)
            try:
                return self.type_of(target, indent)
            finally:
                self._resolving.pop()
        if "const" in schema:
            return self._enum([schema["const"]], indent)
        if "enum" in schema:
            return self._enum(list(schema["enum"]), indent)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                return self._union(schema[key], schema, indent)
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            if not kinds:
                return "types.enum [ null ]"
            if len(kinds) == 1:
                inner = self.type_of({**schema, "type": kinds[0]}, indent)
            else:
                inner = self._one_of([self.type_of({**schema, "type": k}, indent + "  ") for k in kinds], indent)
            return f"types.nullOr {_paren(inner)}" if "null" in kind else inner
        if kind in _SIMPLE:
            return _SIMPLE[kind]
        if kind == "null":
            return "types.enum [ null ]"
        if kind == "array":
            items = schema.get("items", True)
            return f"types.listOf {_paren(self.type_of(items, indent))}"
        if kind == "object" or "properties" in schema:
            return self._object(schema, indent)
        return "types.anything"

    def _enum(self, values: list, indent: str) -> str:
        non_null = [v for v in values if v is not None]
        if not non_null:
            return "types.enum [ null ]"
        listed = nix_value(non_null, indent)  # the schema's order: it is the documented one
        expression = f"types.enum {listed}"
        return f"types.nullOr {_paren(expression)}" if None in values else expression

    def _one_of(self, expressions: list[str], indent: str) -> str:
        inner = indent + "  "
        return "types.oneOf [\n" + "".join(f"{inner}{_paren(e)}\n" for e in expressions) + indent + "]"

    def _union(self, branches: list, schema: dict[str, Any], indent: str) -> str:
        base = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf", "description", "default")}
        nullable = any(isinstance(b, dict) and b.get("type") == "null" and len(b) == 1 for b in branches)
        rest = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null" and len(b) == 1)]
        expressions = []
        for branch in rest:
            merged = {**base, **branch} if isinstance(branch, dict) else branch
            expressions.append(self.type_of(merged, indent + "  "))
        expressions = list(dict.fromkeys(expressions))
        if not expressions:
            inner = "types.enum [ null ]"
            return inner
        inner = expressions[0] if len(expressions) == 1 else self._one_of(expressions, indent)
        return f"types.nullOr {_paren(inner)}" if nullable else inner

    def _object(self, schema: dict[str, Any], indent: str) -> str:
        properties = schema.get("properties")
        extra = schema.get("additionalProperties", True)
        if not properties:
            if extra is False:
                return "types.submodule { }"
            return f"types.attrsOf {_paren(self.type_of(extra, indent))}"
        inner = indent + "  "
        body = ""
        if extra is not False:
            body += f"{inner}freeformType = types.attrsOf {_paren(self.type_of(extra, inner))};\n"
        body += f"{inner}options = {self.options(schema, inner)};\n"
        return "types.submodule {\n" + body + indent + "}"

    def options(self, schema: dict[str, Any], indent: str) -> str:
        """The ``{ name = mkOption {...}; ... }`` block of an object schema."""
        properties = schema.get("properties") or {}
        if not properties:
            return "{ }"
        required = set(schema.get("required") or ())
        inner = indent + "  "
        blocks = [
            f"{inner}{nix_name(name)} = {self.option(properties[name], name in required, inner)};\n"
            for name in sorted(properties)
        ]
        return "{\n" + "".join(blocks) + indent + "}"

    def option(self, schema: Any, required: bool, indent: str) -> str:
        """One ``mkOption { ... }``."""
        if not isinstance(schema, dict):
            schema = {}
        inner = indent + "  "
        type_expression = self.type_of(schema, inner)  # follows a $ref, minding recursion
        if "$ref" in schema and (target := self._deref(schema)) is not None:
            schema = target  # the description and default may sit on the target
        notes = [schema.get("description", "").strip()]
        fields = []
        if "default" in schema:
            fields.append(f"{inner}default = {nix_value(schema['default'], inner)};\n")
        elif not required:
            if not type_expression.startswith("types.nullOr ") and type_expression != "types.anything":
                type_expression = f"types.nullOr {_paren(type_expression)}"
            fields.append(f"{inner}default = null;\n")
            notes.append(UNSET_NOTE)
        if schema.get("x-replace-on-change"):
            notes.append(REPLACE_NOTE)
        if schema.get("x-sensitive"):
            notes.append(SENSITIVE_NOTE)
        description = " ".join(n for n in notes if n)
        head = f"{inner}description = {nix_string(description)};\n" if description else ""
        return "mkOption {\n" + head + f"{inner}type = {type_expression};\n" + "".join(fields) + indent + "}"


# --------------------------------------------------------------------------- the module


def _schemas(name: str, registration: Any) -> tuple[dict, dict]:
    from .errors import PluginError

    try:
        # The inputs NixOps4 sends, the core's own (allowReplacement) included.
        return registration.resource_type.wire_input_schema, registration.resource_type.output_schema
    except Exception as exc:  # a missing or broken schema file must name its type and plugin
        raise PluginError(
            f"resource type {name!r} (plugin {registration.plugin!r}, "
            f"{registration.distribution or 'not installed'}): cannot read its schemas: {exc}",
            hint="give the type input_schema and output_schema, or ship schemas/<type>.json",
        ) from exc


def _resource_type(name: str, registration: Any, indent: str) -> str:
    rtype = registration.resource_type
    input_schema, output_schema = _schemas(name, registration)
    inner = indent + "  "
    io = inner + "  "
    parts = [
        f"{inner}description = {nix_string(rtype.summary or name)};\n",
        f"{inner}requireState = {'true' if rtype.requires_state else 'false'};\n",
    ]
    for key, schema in (("inputs", input_schema), ("outputs", output_schema)):
        translator = _Translator(schema, f"{name}.{key}")
        parts.append(f"{inner}{key} = {{\n{io}options = {translator.options(schema, io)};\n{inner}}};\n")
    return "{\n" + "".join(parts) + indent + "}"


def _description(types: dict) -> str:
    """The provider's description, naming the types it serves (the registry knows them)."""
    listed = ", ".join(f"`{name}`" for name in sorted(types))
    return PROVIDER_DESCRIPTION + (f" Resource types: {listed}." if listed else "")


def render(registry: Any) -> str:
    """The provider module for every type in ``registry`` (a :class:`~.plugins.Registry`)."""
    types = registry.types
    # Plugins passed in directly have names made from their id(): not deterministic.
    origin = [
        f"#   {name}: " + (f"{reg.distribution} (plugin {reg.plugin})" if reg.distribution else "not installed") + "\n"
        for name, reg in sorted(types.items())
    ]
    header = (
        "# The NixOps4 provider module of fediversity-providers.\n"
        "#\n"
        "# GENERATED by `fediversity-provider nix-module` from the resource types'\n"
        "# JSON Schemas: do not edit. Regenerate it with\n"
        f"#   {COMMAND}\n"
        "#\n"
        "# Use: import ./provider.nix { package = <the fediversity-providers package>; }\n"
        "# gives the module for `providers.<name>` of a NixOps4 root (with its\n"
        "# `name`, `description`, `sourceBaseUrl` and `sourceName`, which\n"
        "# NixOps4's `lib.renderProviderDocs` reads).\n"
        "#\n"
        "# Resource types:\n" + ("".join(origin) if origin else "#   (none registered)\n")
    )
    indent = "    "
    bodies = "".join(
        f"{indent}{nix_name(name)} = {_resource_type(name, types[name], indent)};\n" for name in sorted(types)
    )
    resource_types = "{\n" + bodies + "  }" if bodies else "{ }"
    return (
        header
        + "{\n"
        + "  package ? null,\n"
        + "  executable ?\n"
        + "    if package == null then\n"
        + '      throw "provider.nix: give `package` (the fediversity-providers package) or `executable`"\n'
        + "    else\n"
        + '      "${package}/bin/fediversity-provider",\n'
        + f"  sourceBaseUrl ? {nix_string(SOURCE_BASE_URL)},\n"
        + "}:\n"
        + "{ lib, ... }:\n"
        + "let\n"
        + "  inherit (lib) mkOption types;\n"
        + "in\n"
        + "{\n"
        + f"  name = {nix_string(PROVIDER_NAME)};\n"
        + f"  description = {nix_string(_description(types))};\n"
        + "  inherit sourceBaseUrl;\n"
        + f"  sourceName = {nix_string(SOURCE_NAME)};\n"
        + "  inherit executable;\n"
        + '  args = [ "serve" ];\n'
        + f"  resourceTypes = {resource_types};\n"
        + "}\n"
    )
