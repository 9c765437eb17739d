"""Find the plugins' entry points without scanning every distribution each time.

``importlib.metadata.entry_points()`` reads the metadata of every installed
distribution, which costs more than the rest of a provider's start-up.
NixOps4 starts one provider process per operation, so the result is cached,
keyed by the import path and the modification times of its directories (an
install or removal changes them).  Set ``FEDIVERSITY_PROVIDERS_NO_CACHE=1`` to
always scan.
"""

from __future__ import annotations

import json
import os
import sys

from typing import NamedTuple

__all__ = ["EntryPoint", "discover"]

_CACHE_VERSION = 1


class EntryPoint(NamedTuple):
    """One entry point, as the cache stores it."""

    name: str
    value: str
    distribution: str

    def load(self):
        """Import the object the entry point names."""
        import importlib

        module_name, _, attr = self.value.partition(":")
        obj = importlib.import_module(module_name.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


_METADATA_SUFFIXES = (".dist-info", ".egg-info", ".egg-link")


def _fingerprint() -> list:
    """The distributions' metadata on the import path, and when each last changed.

    Only metadata entries count, not the directories' own times: a script's
    directory (``sys.path[0]``) or a busy ``/tmp`` changes all the time.
    """
    stamps = []
    for entry in sys.path:
        found = []
        try:
            with os.scandir(entry or ".") as it:
                for item in it:
                    if item.name.endswith(_METADATA_SUFFIXES):
                        found.append([item.name, item.stat().st_mtime_ns])
        except OSError:  # a zip file or a missing directory: its own time will do
            try:
                found.append(["", os.stat(entry).st_mtime_ns])
            except OSError:
                pass
        stamps.append([entry, sorted(found)])
    return stamps


def _fnv1a(data: bytes) -> int:
    """A 32-bit FNV-1a hash: enough to name a file, without loading zlib or hashlib."""
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def _cache_path(group: str) -> str:
    """One cache file per group and import path, so environments do not evict each other."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = f"{_fnv1a(chr(0).join(sys.path).encode()):08x}"
    return os.path.join(base, "fediversity-providers", f"entry-points-{group}-{key}.json")


def _scan(group: str) -> list[EntryPoint]:
    from importlib.metadata import distributions

    found: dict[tuple[str, str], EntryPoint] = {}
    for dist in distributions():
        dist_name = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            if ep.group == group:
                # The first distribution on sys.path wins, as in importlib.
                found.setdefault((dist_name, ep.name), EntryPoint(ep.name, ep.value, dist_name))
    return list(found.values())


def discover(group: str) -> list[EntryPoint]:
    """All entry points of ``group``, from the cache when it is still valid."""
    if os.environ.get("FEDIVERSITY_PROVIDERS_NO_CACHE"):
        return _scan(group)
    path = _cache_path(group)
    fingerprint = _fingerprint()
    try:
        with open(path) as f:
            cached = json.load(f)
        if cached["version"] == _CACHE_VERSION and cached["fingerprint"] == fingerprint:
            return [EntryPoint(*row) for row in cached["entryPoints"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = _scan(group)
    _write_cache(path, fingerprint, found)
    return found


def _write_cache(path: str, fingerprint: list, found: list[EntryPoint]) -> None:
    """Atomically replace the cache; a read-only home just means no cache."""
    document = {
        "version": _CACHE_VERSION,
        "fingerprint": fingerprint,
        "entryPoints": [[ep.name, ep.value, ep.distribution] for ep in found],
    }
    import tempfile

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".entry-points-")
        with os.fdopen(fd, "w") as f:
            json.dump(document, f)
        os.replace(tmp, path)
    except OSError:
        pass
