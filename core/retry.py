"""Retry with backoff, once for every provider.

Each provider keeps its own rule about *what* is safe to repeat (look before
repeating a call that is not idempotent; repeat only reads; a window the
inputs set), and says so through ``retryable``.  What is the same everywhere
lives here: the window is cut short by the request's deadline, the delay
doubles up to a ceiling with jitter so that concurrent processes do not retry
in step, and every retry is one line on stderr, so a person sees why a
request is slow.
"""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

__all__ = ["retry", "is_retryable"]

T = TypeVar("T")


def is_retryable(error: BaseException) -> bool:
    """The default rule: the error kinds that say so (Transient, Unreachable)."""
    return bool(getattr(error, "retryable", False))


def retry(
    attempt: Callable[[], T],
    *,
    window: float,
    what: str,
    deadline: float | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
    log: Callable[[str], None] | None = None,
    first_delay: float = 0.25,
    max_delay: float = 5.0,
    jitter: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    fill_window: bool = False,
) -> T:
    """``attempt()``'s result, calling it again while it raises a retryable error.

    ``window`` is how long to keep trying, in seconds from now; ``deadline``
    (a :func:`time.monotonic` instant, e.g. ``ctx.deadline``) bounds it too.
    A retry is never started when its delay would end after either.  The last
    error is raised as it is, with the attempt count added to a
    ``ProviderError``'s message when there was more than one attempt.
    ``what`` names the work in the retry lines ("GET /nodes/pve/qemu").
    ``fill_window`` shortens the last delay to end at the window's end and
    tries once more there, for a window an input sets ("keep trying for N
    seconds" means the last attempt is made near N seconds, not well before).
    """
    give_up = time.monotonic() + max(0.0, window)
    if deadline is not None:
        give_up = min(give_up, deadline)
    delay, count = first_delay, 1
    while True:
        try:
            return attempt()
        except Exception as error:  # noqa: BLE001 - the rule decides, not the type
            if not retryable(error):
                raise
            wait = min(delay, max_delay)
            if jitter:
                wait *= 0.5 + random.random() / 2
            left = give_up - time.monotonic()
            if fill_window and wait > left > 0.05:
                wait = left
            if wait > left:
                if count > 1 and hasattr(error, "message"):
                    error.message += f" (after {count} attempts)"
                raise
            if log is not None:
                log(f"{what}: {_reason(error)}; attempt {count + 1} in {wait:.2f}s")
            sleep(wait)
            delay *= 2
            count += 1


def _reason(error: BaseException) -> str:
    return getattr(error, "message", None) or str(error) or type(error).__name__
