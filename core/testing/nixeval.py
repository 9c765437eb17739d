"""Evaluate Nix with the plain ``nix-instantiate`` (no nixpkgs), for checking Nix files.

``nix_eval`` runs ``nix-instantiate --eval --strict --json`` against the
``dummy://`` store: evaluation that needs no store path never writes to
``/nix``, so concurrent test sessions cannot disturb one another, and no root
is needed.  ``FAKE_LIB`` is the part of nixpkgs' ``lib`` a generated provider
module uses, as plain data (each option type is an attribute set naming
itself); ``provider_module`` evaluates a module with it and
``accepts(option_type, value)`` tells whether a value would pass that option
type, so a test of the generator can check a schema's valid instances
against the Nix types it writes, thousands of them, in one evaluation.  It
is no stand-in for NixOps4 or the module system: this project's own tests
evaluate the provider module, the MVP example and the NixOS modules with
the real nixpkgs lib and upstream NixOps4 (``tests/nix/``).

Fixture: ``nix_eval`` (a function ``(expression, **kw) -> JSON value``).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from .prereq import require_executable

__all__ = ["FAKE_LIB", "NixError", "nix_eval", "nix_parse", "provider_module", "accepts", "nix_eval_fixture"]

FAKE_LIB = r"""
# The parts of nixpkgs' `lib` the generated provider module may use, as data.
let
  type = name: extra: { _type = "option-type"; inherit name; } // extra;
in
{
  mkOption =
    { type, description ? null, default ? null, ... }@args:
    { _type = "option"; inherit type description; hasDefault = args ? default; }
    // (if args ? default then { inherit default; } else { });
  types = {
    str = type "str" { };
    int = type "int" { };
    number = type "number" { };
    bool = type "bool" { };
    anything = type "anything" { };
    enum = values: type "enum" { inherit values; };
    nullOr = elem: type "nullOr" { inherit elem; };
    listOf = elem: type "listOf" { inherit elem; };
    attrsOf = elem: type "attrsOf" { inherit elem; };
    oneOf = elems: type "oneOf" { inherit elems; };
    submodule =
      { options ? { }, freeformType ? null }:
      type "submodule" { inherit options freeformType; };
  };
}
"""


class NixError(AssertionError):
    """Nix refused the file or expression; the message holds Nix's own error."""


def _env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Nothing machine-global: state, logs and caches go to this test's directory.
    env.update(
        NIX_STATE_DIR=str(workdir / "nix-state"),
        NIX_LOG_DIR=str(workdir / "nix-log"),
        XDG_CACHE_HOME=str(workdir / "cache"),
        NIX_PATH="",
    )
    env.pop("NIX_REMOTE", None)
    return env


def _run(args: list[str], workdir: Path | None) -> str:
    exe = require_executable("nix-instantiate", "nix-bin")
    with tempfile.TemporaryDirectory(prefix="nixeval-") as scratch:
        work = Path(workdir or scratch)
        done = subprocess.run([exe, *args], capture_output=True, text=True, env=_env(work), timeout=120)
    if done.returncode != 0:
        raise NixError(f"nix-instantiate {' '.join(args[:3])} ... failed:\n{done.stderr.strip()}")
    return done.stdout


def nix_eval(expression: str, *, workdir: Path | None = None,
             restrict_to: Sequence[str | os.PathLike] | None = None) -> Any:
    """The JSON value of ``expression`` (evaluated strictly, without a store).

    With ``restrict_to`` (directories), Nix's ``restrict-eval`` is on: reading
    or importing any file outside them fails the evaluation, so a test can show
    that an expression never reads, say, a secret on the deployer.
    """
    args = ["--eval", "--strict", "--json", "--store", "dummy://"]
    if restrict_to is not None:
        args += ["--option", "restrict-eval", "true"]
        for path in restrict_to:
            args += ["-I", os.fspath(path)]
    out = _run([*args, "-E", expression], workdir)
    return json.loads(out)


def nix_parse(path: str | os.PathLike, *, workdir: Path | None = None) -> str:
    """Nix's parse of the file at ``path`` (raises :class:`NixError` on a syntax error)."""
    return _run(["--parse", "--store", "dummy://", str(path)], workdir)


def _nix_path(path: Path) -> str:
    text = str(Path(path).resolve())
    if any(c in text for c in ' "\\$'):
        raise ValueError(f"{text!r} cannot be written as a Nix path literal")
    return text


def provider_module(path: str | os.PathLike, *, executable: str = "/nix/store/x-fediversity-providers/bin/fediversity-provider",
                    workdir: Path | None = None) -> dict[str, Any]:
    """The provider module at ``path`` applied to ``executable`` and ``FAKE_LIB``, as data."""
    with tempfile.TemporaryDirectory(prefix="nixlib-") as scratch:
        lib = Path(scratch) / "fake-lib.nix"
        lib.write_text(FAKE_LIB)
        expression = (
            f"(import {_nix_path(Path(path))} {{ executable = {json.dumps(executable)}; }})"
            f" {{ lib = import {_nix_path(lib)}; }}"
        )
        return nix_eval(expression, workdir=workdir)


def accepts(option_type: dict[str, Any], value: Any) -> bool:
    """Whether ``value`` (JSON) passes ``option_type`` (as ``FAKE_LIB`` describes it).

    Submodules: unknown attributes are refused (unless there is a freeform
    type), missing ones must have a default.
    """
    name = option_type["name"]
    if name == "anything":
        return True
    if name == "str":
        return isinstance(value, str)
    if name == "bool":
        return isinstance(value, bool)
    if name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "enum":
        return any(value == v and type(value) is type(v) for v in option_type["values"])
    if name == "nullOr":
        return value is None or accepts(option_type["elem"], value)
    if name == "listOf":
        return isinstance(value, list) and all(accepts(option_type["elem"], v) for v in value)
    if name == "attrsOf":
        return isinstance(value, dict) and all(accepts(option_type["elem"], v) for v in value.values())
    if name == "oneOf":
        return any(accepts(t, value) for t in option_type["elems"])
    if name == "submodule":
        if not isinstance(value, dict):
            return False
        options = option_type["options"]
        freeform = option_type.get("freeformType")
        for key, item in value.items():
            if key in options:
                if not accepts(options[key]["type"], item):
                    return False
            elif freeform is None or not accepts(freeform, {key: item}):  # freeformType is attrsOf X
                return False
        return all(key in value or opt["hasDefault"] for key, opt in options.items())
    raise ValueError(f"unknown option type {name!r}")


@pytest.fixture(name="nix_eval")
def nix_eval_fixture(tmp_path):
    """``nix_eval(expression)``: the JSON value of a Nix expression, evaluated with Debian's Nix."""

    def evaluate(expression: str) -> Any:
        return nix_eval(expression, workdir=tmp_path)

    return evaluate
