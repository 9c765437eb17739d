"""How SIGTERM and SIGINT reach a request: as an exception no plugin catches by accident.

Python delivers a signal by running its handler between two bytecodes of
the main thread, and an exception raised there surfaces wherever that
thread happens to be.  Two rules follow:

- The exception is :class:`Interrupted`, a ``BaseException`` like
  ``KeyboardInterrupt``: a plugin's ``except Exception`` does not swallow it,
  while its ``finally`` blocks (its clean-up) still run.
- It is raised only while a plugin method runs (:data:`PLUGIN`).  Once the
  method has returned, what it made is in the core's hands, and a signal then
  only ends the loop after the answer is written: an interruption never
  loses the outputs of a create that has finished.
"""

from __future__ import annotations

import threading

__all__ = ["Interrupted", "PLUGIN", "plugin_running", "NO_GUARD"]


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived; carries the signal's name."""


_lock = threading.Lock()


class _PluginRegion:
    """``with PLUGIN:`` around a plugin method's call marks it interruptible.

    ``__exit__`` is the lock's own, implemented in C: between the method's
    return and the lock's release there is no bytecode boundary at which a
    handler could run and raise into the core.  ``__enter__`` refuses to start
    a plugin method once a stop was asked for while the core was working.
    """

    stop: str | None = None

    def __enter__(self) -> None:
        _lock.acquire()
        try:
            if self.stop is not None:
                raise Interrupted(self.stop)
        except BaseException:
            _lock.release()
            raise

    __exit__ = staticmethod(_lock.__exit__)


PLUGIN = _PluginRegion()


def plugin_running() -> bool:
    """Whether the main thread is inside a plugin method right now."""
    return _lock.locked()


class _NoGuard:
    """The guard outside ``serve``: no signal handler of ours is installed there."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


NO_GUARD = _NoGuard()
