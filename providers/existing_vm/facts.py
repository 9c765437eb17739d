"""The facts of a machine: one POSIX sh script, one round trip, parsed here."""

from __future__ import annotations

import json
import re
import shlex

from fediversity_providers import Conflict, ProtocolError
from fediversity_providers.core.untrusted import printable

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

__all__ = ["COMMAND", "MAX_ANSWER_BYTES", "parse", "check_expect", "nix_system"]

#: The facts are a few hundred bytes; an answer larger than this is refused.
MAX_ANSWER_BYTES = 64 * 1024
#: The longest value one fact may have (a host name is at most 253 characters).
MAX_VALUE_CHARS = 256

_SCRIPT = r"""
printf 'hostname=%s\n' "$(uname -n)"
printf 'machine=%s\n' "$(uname -m)"
printf 'kernelname=%s\n' "$(uname -s)"
printf 'kernel=%s\n' "$(uname -r)"
if [ -r /etc/os-release ]; then (. /etc/os-release; printf 'osid=%s\nosversion=%s\n' "${ID-}" "${VERSION_ID-}"); fi
if [ -e /etc/NIXOS ]; then echo nixos=1; fi
for n in nix /run/current-system/sw/bin/nix /nix/var/nix/profiles/default/bin/nix; do
  v=$("$n" --version 2>/dev/null) && { printf 'nix=%s\n' "$v" | head -n 1; break; }
done
printf 'cpus=%s\n' "$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
printf 'memkb=%s\n' "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null)"
"""
COMMAND = "sh -c " + shlex.quote(_SCRIPT)

_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "i486": "i686", "i586": "i686", "ppc64le": "powerpc64le"}


def nix_system(machine: str, kernel_name: str) -> str:
    """The Nix system double for ``uname -m`` and ``uname -s``, e.g. ``x86_64-linux``."""
    return f"{_ARCH.get(machine, machine)}-{kernel_name.lower()}"


def parse(text: str) -> dict:
    """The outputs from the facts command's answer; ProtocolError for an answer no real machine gives."""
    found: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            found.setdefault(key, value.strip())
    for key, value in found.items():
        if len(value) > MAX_VALUE_CHARS or _CONTROL.search(value):
            raise ProtocolError(
                f"the machine's answer for {printable(key, 40)!r} is not a fact: {printable(value, 80)!r} "
                + ("is too long" if len(value) > MAX_VALUE_CHARS else "holds control characters"),
                field="ssh.host", hint="check the machine: it is not what it should be, or its tools are broken")
    try:
        nix = found.get("nix")
        return {
            "hostname": found["hostname"],
            "system": nix_system(found["machine"], found["kernelname"]),
            "kernel": found["kernel"],
            "os": {"id": found.get("osid") or None, "versionId": found.get("osversion") or None},
            "nixos": found.get("nixos") == "1" or found.get("osid") == "nixos",
            "nixVersion": nix.split()[-1] if nix else None,
            "cpus": int(found["cpus"]),
            "memoryBytes": int(found.get("memkb") or 0) * 1024,
        }
    except (KeyError, ValueError, IndexError):
        raise ProtocolError(
            f"the machine's facts could not be read from its answer {printable(text, 300)!r}",
            field="ssh.host", hint="the machine needs uname, nproc and /proc/meminfo (any Linux has them)",
        ) from None


def check_expect(outputs: dict, expect: dict) -> None:
    for name, wanted in expect.items():
        if wanted is None:
            continue
        actual = outputs[name]
        if actual != wanted:
            raise Conflict(
                f"expected {name} {json.dumps(wanted)}, but the machine {outputs['ssh']['host']} reports "
                f"{json.dumps(actual)}",
                field=f"expect.{name}",
                hint="point ssh at the right machine, or change expect to what it is",
            )
