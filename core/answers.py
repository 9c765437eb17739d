"""What a plugin returns must be writable on the wire, and what cannot be sent is not lost.

A plugin's outputs go to NixOps4 as one JSON line.  Python writes NaN and
Infinity unless told not to (NixOps4's parser refuses them), a string may
hold a lone surrogate (not UTF-8), and a structure may nest beyond what can
be encoded.  Such outputs are a plugin error, never written.  But a create
that returned them, or whose answer cannot be written because the reader is
gone, has made something: its outputs then go to stderr (secrets masked), so
that the operator can find what was made and remove or adopt it.
"""

from __future__ import annotations

import json
from typing import Any

from . import logs, wire
from .errors import PluginError

__all__ = ["check_writable", "report_unsent", "MAKES_THINGS"]

#: Answers whose loss would leave something made behind without a record.
MAKES_THINGS = ("createResourceResponse", "updateResourceResponse")


def _shallow(value: Any, depth: int = 16) -> Any:
    """``value`` with whatever nests deeper than ``depth`` replaced by a marker."""
    if isinstance(value, dict):
        return {str(k): _shallow(v, depth - 1) for k, v in value.items()} if depth else "(nested deeper)"
    if isinstance(value, (list, tuple)):
        return [_shallow(v, depth - 1) for v in value] if depth else "(nested deeper)"
    return value


def describe(value: Any) -> str:
    """A best-effort JSON rendering of anything a plugin returned, for a log line."""
    try:
        return json.dumps(_shallow(value), ensure_ascii=True, allow_nan=True, default=repr, sort_keys=True)
    except (ValueError, TypeError, RecursionError):
        return repr(type(value))


def report_unsent(name: str, kind: str, body: Any, why: str) -> None:
    """Log an answer that could not be sent; for a create or update, what it made."""
    if kind in MAKES_THINGS:
        logs.emit(
            name,
            f"the {kind} could not be sent ({why}); what the request made, so that it can be found "
            f"and removed or adopted: {describe(body)}",
            level="error",
        )
    else:
        logs.emit(name, f"the {kind} could not be sent ({why})", level="error")


def check_writable(value: Any, root: str, *, resource: str, kind: str) -> None:
    """Refuse what cannot go on the wire, as the plugin's error, logging what it returned."""
    problem = wire.unwritable(value, root)
    if problem is None:
        return
    report_unsent(resource, kind, {root: value}, problem)
    raise PluginError(
        f"the plugin returned a value that cannot be written as JSON: {problem}",
        resource=resource,
        hint="this is a bug in the plugin; what it returned is logged on stderr; report it with these details",
    )
