"""Test environments kept running in the background, for trying the docs by hand.

``eval "$(python -m fediversity_providers.testing ssh-host)"`` must return
once the host is up, so the environment cannot live in that process: it is
forked into a keeper that detaches (its own session, stdio on a log file, so
no ``$(...)`` waits on it), brings the environment up, writes the shell
variables that describe it, and waits for ``stop``.  The keeper is the owner
of whatever it allocates (test host slots record their owning process), so a
keeper that dies has its hosts cleaned up by the next allocation.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

__all__ = ["keep", "stop", "running", "state_dir"]

#: Starts an environment; returns its shell variables and how to close it.
Starter = Callable[[], "tuple[dict[str, str], Callable[[], None]]"]


def state_dir() -> Path:
    """Where keepers record themselves: ``$FEDIVERSITY_TRYOUT_DIR``, or one per user in /tmp."""
    base = os.environ.get("FEDIVERSITY_TRYOUT_DIR") or f"/tmp/fediversity-providers-tryout-{os.getuid()}"
    path = Path(base)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def keep(name: str, start: Starter, *, timeout: float = 60.0) -> dict[str, str]:
    """Start ``start()`` in a detached keeper named ``name``; its variables, once it is up.

    A keeper of that name that is still running is stopped first, so the
    command can be repeated.  Raises RuntimeError with the keeper's log when
    the environment does not come up within ``timeout`` seconds.
    """
    stop(name)
    directory = state_dir()
    variables, log = directory / f"{name}.env.json", directory / f"{name}.log"
    variables.unlink(missing_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the keeper
        code = 1
        try:
            _become_keeper(log)
            code = _serve(name, start, variables)
        finally:
            os._exit(code)
    os.waitpid(pid, 0)  # the first child exits at once; its child is the keeper
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if variables.exists():
            found = json.loads(variables.read_text())
            if "error" in found:
                raise RuntimeError(f"{name} did not start: {found['error']} (log: {log})")
            return found["variables"]
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not start within {timeout:.0f}s; see {log}")


def _become_keeper(log: Path) -> None:
    """Detach: a new session, a second fork so no terminal comes back, stdio on ``log``."""
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)


def _serve(name: str, start: Starter, variables: Path) -> int:
    directory = variables.parent
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    (directory / f"{name}.pid").write_text(str(os.getpid()))
    try:
        found, close = start()
    except BaseException as error:  # the parent must hear why
        _write(variables, {"error": f"{type(error).__name__}: {error}"})
        raise
    try:
        _write(variables, {"variables": found})
        print(f"{name} up: {json.dumps(found)}", flush=True)
        stopped.wait()
    finally:
        close()
        (directory / f"{name}.pid").unlink(missing_ok=True)
        variables.unlink(missing_ok=True)
        print(f"{name} stopped", flush=True)
    return 0


def _write(path: Path, document: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, path)


def running() -> dict[str, int]:
    """The keepers alive now, by name."""
    alive = {}
    for pidfile in state_dir().glob("*.pid"):
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            pidfile.unlink(missing_ok=True)
            continue
        alive[pidfile.stem] = pid
    return alive


def stop(name: str, *, timeout: float = 20.0) -> bool:
    """Stop the keeper ``name`` and wait until it has closed its environment; whether one ran."""
    pid = running().get(name)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def exports(found: dict[str, str]) -> str:
    """Shell lines that set the variables, for ``eval "$(...)"``."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in found.items())
