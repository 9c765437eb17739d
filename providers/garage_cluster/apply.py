"""Applying the staged changes as exactly one new layout version, however the answer goes astray.

ApplyClusterLayout names the version it makes (current + 1) and Garage
refuses any other, so a version is applied at most once; what needs care is
a lost answer (a timeout, a dropped connection, a 5xx).  The rule, through
:func:`fediversity_providers.core.retry.retry`: before sending it again,
look at the layout.

- Version ``target`` is current and its roles are the ones wanted: it was
  applied (by the lost request, or by someone applying the same): done.
- Version ``target`` or later is current with other roles: someone else
  applied a layout meanwhile (Garage's staged changes are one shared set, so
  theirs may hold ours too): a Conflict, nothing more is applied.
- The version has not moved and our changes are still staged: send it again
  (Garage refuses it if the first one lands meanwhile; the next look sees it).
- The version has not moved and the staged changes differ: a Conflict.
"""

from __future__ import annotations

from fediversity_providers.core.errors import Conflict
from fediversity_providers.core.retry import retry

from . import plan
from .layoutapi import Layout

__all__ = ["apply_once"]


def apply_once(api: Layout, target: int, wanted: dict, change: dict, names: dict[str, str], inputs: dict, ctx) -> int:
    """Apply the staged ``change`` as version ``target``; returns ``target``."""
    from fediversity_providers.providers.garage_bucket.admin import Lost

    sent = [False]

    def attempt() -> int:
        if sent[0]:
            seen = api.layout()
            if seen["version"] >= target:
                if seen["version"] == target and seen["roles"] == wanted:
                    ctx.progress("applied", f"layout version {target} (found after a lost answer)")
                    return target
                raise concurrent(seen, target, names)
            if seen["staged"] != change:
                raise Conflict(f"the staged changes were changed by someone else while layout version {target} "
                               f"was being applied: now {plan.describe(seen['staged'], names) or 'none'}",
                               field="pendingChanges",
                               hint="look at the layout (garage layout show) and apply again; nothing was applied")
        sent[0] = True
        ctx.progress("applying", f"layout version {target}")
        return api.apply(target)["version"]

    def repeatable(error: BaseException) -> bool:
        return isinstance(error, Lost) or bool(getattr(error, "retryable", False))

    return retry(attempt, window=inputs.get("retryTimeout", 60), what=f"ApplyClusterLayout version {target}",
                 deadline=getattr(ctx, "deadline", None), retryable=repeatable,
                 log=lambda line: ctx.log("%s", line), first_delay=0.05, max_delay=2.0)


def concurrent(seen: dict, target: int, names: dict[str, str]) -> Conflict:
    return Conflict(
        f"layout version {seen['version']} was applied by someone else while this resource applied version {target}, "
        "with other roles than these inputs give; this resource applied nothing more",
        field="nodes",
        hint="read the resource to see the layout as it is, then apply again to bring it back to the inputs "
             "(or change the inputs)")
