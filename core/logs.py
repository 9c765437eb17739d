"""Log lines on stderr, which NixOps4 shows to the user: ``proxmox_vm: cloning: ...``.

Every line is masked (core/redact) and made printable (core/printable): a
control character from an input or a remote answer cannot drive the terminal.

The core's own lines (``ctx.log``, ``ctx.progress``, the server's notes) are
written straight to stderr, secrets masked.  The logging module is not
imported for them: with what it pulls in (traceback, threading, string,
textwrap) it cost a tenth of a provider's start, and most requests never
need it.  Under ``serve`` it is configured the moment anything imports it
(a plugin, paramiko, ``ctx.logger``), so every line that reaches stderr goes
through the same format and the same masking.
"""

from __future__ import annotations

import sys
from typing import Any

from . import redact
from .printable import printable

__all__ = ["emit", "configure_on_import", "configure_logging", "short_name"]

_settings = {"debug": False}
_KEEP = "\n\t"  # a traceback's lines and indentation; every other control character is escaped


def short_name(name: str) -> str:
    """``fediversity_providers.proxmox_vm`` -> ``proxmox_vm``."""
    return name.removeprefix("fediversity_providers").lstrip(".") or "provider"


def emit(name: str, text: str, *, level: str = "") -> None:
    """One line on stderr: ``name: [level: ]text``, secrets masked."""
    prefix = f"{level}: " if level else ""
    try:
        sys.stderr.write(f"{short_name(name)}: {prefix}{printable(redact.scrub(text), keep=_KEEP)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr gone too: nowhere left to say it
        pass


def debugging() -> bool:
    return _settings["debug"]


def configure_logging(debug: bool = False) -> None:
    """Route every logging record to stderr in the core's format, secrets masked."""
    import logging

    _settings["debug"] = debug

    class Scrubbing(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.msg = printable(redact.scrub(record.getMessage()), keep=_KEEP)
            record.args = None
            return True

    class Short(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
            return f"{short_name(record.name)}: {level}{super().format(record)}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Short("%(message)s"))
    handler.addFilter(Scrubbing())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


class _Loader:
    """Wraps logging's own loader: runs the module, then configures it."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        configure_logging(_settings["debug"])

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...
        return getattr(self._loader, name)


class _ConfigureOnImport:
    """A meta-path finder that only watches for the first import of ``logging``."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def configure_on_import(debug: bool = False) -> None:
    """Configure logging now if it is loaded, else as soon as anything imports it."""
    _settings["debug"] = debug
    if "logging" in sys.modules:
        configure_logging(debug)
    elif not any(isinstance(finder, _ConfigureOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ConfigureOnImport())
