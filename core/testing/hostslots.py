"""Slots for SSH test hosts: who owns which 127.77.0.N, safely across test sessions.

A slot N gives a host the address 127.77.0.N, the network namespace
``fvp-hN`` and the veth pair ``fvpoN``/``fvpiN``.  Slots are handed out
under an exclusive lock from a JSON registry that records the owning process
(pid and kernel start time, so a reused pid is not mistaken for the owner).
Before allocating, slots of owners that died are cleaned up: whatever still
runs in their namespace is killed, and the namespace, veth, route and
directory removed.  Slots in use by something outside the registry are
skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

__all__ = ["PREFIX", "STATE_DIR", "run", "stop", "kill_netns_pids", "allocate", "release"]

PREFIX = "127.77.0."
SLOTS = range(2, 255)
STATE_DIR = Path(os.environ.get("FEDIVERSITY_TESTHOSTS_DIR", "/run/fediversity-providers-testhosts"))


def run(*argv: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    result = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kwargs
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (guards against reused pids)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(owner: dict) -> bool:
    return _start_time(owner["pid"]) == owner.get("start")


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(3)


def kill_netns_pids(netns: str) -> None:
    """SIGKILL whatever still runs in ``netns`` (sessions, leftovers)."""
    for _ in range(50):
        out = run("ip", "netns", "pids", netns, check=False).stdout.split()
        if not out:
            return
        for pid in out:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.02)


def _remove_slot(slot: int, entry: dict) -> None:
    """Remove everything a slot holds: processes, namespace, route, files."""
    netns = entry["netns"]
    kill_netns_pids(netns)
    # Deleting the outer end removes the pair now; a namespace's own teardown
    # (and with it the veth) happens later, in the kernel's cleanup work.
    run("ip", "link", "del", f"fvpo{slot}", check=False)
    run("ip", "netns", "del", netns, check=False)
    run("ip", "route", "del", "table", "local", f"{PREFIX}{slot}/32", check=False)
    directory = entry.get("dir")
    if directory:
        for _ in range(20):
            shutil.rmtree(directory, ignore_errors=True)
            if not os.path.exists(directory):
                break
            time.sleep(0.05)


@contextlib.contextmanager
def _registry() -> Iterator[dict]:
    """The slot registry, locked for the duration of the block."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = STATE_DIR / "registry.json"
        try:
            registry = json.loads(path.read_text())
        except (OSError, ValueError):
            registry = {}
        try:
            yield registry
        finally:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(registry, indent=1))
            tmp.replace(path)


def _slot_in_use_outside_registry(slot: int) -> bool:
    netns = Path("/run/netns") / f"fvp-h{slot}"
    if netns.exists() or Path(f"/sys/class/net/fvpo{slot}").exists():
        return True
    routes = run("ip", "route", "show", "table", "local", f"{PREFIX}{slot}/32", check=False).stdout
    return bool(routes.strip())


def allocate(count: int, directory: Path) -> list[int]:
    owner = {"pid": os.getpid(), "start": _start_time(os.getpid())}
    with _registry() as registry:
        for key, entry in list(registry.items()):
            if not _alive(entry["owner"]):
                _remove_slot(int(key), entry)
                del registry[key]
        slots = []
        for slot in SLOTS:
            if len(slots) == count:
                break
            if str(slot) in registry or _slot_in_use_outside_registry(slot):
                continue
            registry[str(slot)] = {
                "owner": owner,
                "netns": f"fvp-h{slot}",
                "dir": str(directory / f"h{slot}"),
            }
            slots.append(slot)
        if len(slots) < count:
            for slot in slots:
                del registry[str(slot)]
            raise RuntimeError(f"no free test host slots for {count} hosts in {PREFIX}0/24")
        return slots


def release(slot: int) -> None:
    with _registry() as registry:
        entry = registry.pop(str(slot), None)
        if entry is not None:
            _remove_slot(slot, entry)
