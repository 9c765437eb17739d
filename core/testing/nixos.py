"""Fake NixOS systems for tests: build a "toplevel" with Debian's Nix, no nixpkgs.

A test toplevel is a plain ``builtins.derivation`` whose builder is ``/bin/sh``.
It provides what a deployer touches on a real NixOS system:

- ``bin/switch-to-configuration ACTION`` (``switch | boot | test |
  dry-activate``): ``switch``/``test`` point ``/run/current-system`` at the
  toplevel, ``switch``/``boot`` point the fake boot loader entry
  (``/var/lib/fake-nixos/boot-default``) at it, ``dry-activate`` only prints
  what it would do.  Every call is appended to
  ``/var/lib/fake-nixos/activations`` as ``ACTION STOREPATH``.  A toplevel
  built with ``fail=True`` switches the link and then fails, printing lines on
  stderr, like an activation whose units do not come up.
- ``bin/apply ACTION`` (unless ``apply=False``): sets the system profile for
  ``switch``/``boot`` and runs ``switch-to-configuration``, as NixOS'
  ``bin/apply`` does.
- ``payloads`` extra store paths of ``payload_size`` random bytes in its
  closure, so that copying takes measurable time.
- ``hook``: shell code run by ``switch``/``test`` right after the link moved
  (a test can pause activation there, e.g. to cut the network).

The deployer's own Nix runs single-user as root with the settings in
:data:`NIX_CONFIG` passed through the environment of each Nix command; the
machine's ``nix.conf`` is left alone, so concurrent test sessions only share
the store, whose locking is Nix's own.  Every toplevel carries a per-session
nonce, so sessions never build the same path.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest

from .prereq import require_executable

__all__ = [
    "NIX_CONFIG",
    "HOST_NIX_CONF",
    "PAUSE_HOOK",
    "FakeNixos",
    "Toplevel",
    "build_toplevel",
    "fake_nixos_hosts",
    "nix_env",
    "toplevel_builder",
]

#: Settings for Debian's Nix 2.8 as single-user root, without a sandbox or substituters.
NIX_CONFIG = "\n".join(
    [
        "build-users-group =",
        "sandbox = false",
        "substituters =",
        "experimental-features = nix-command",
    ]
)

#: The ``/etc/nix/nix.conf`` a fake NixOS host gets (its nix-daemon reads no environment).
HOST_NIX_CONF = NIX_CONFIG + "\n"

_SESSION_NONCE = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"

_EXPRESSION = r"""
{ name, nonce, stc, apply, payloads, payloadSize }:
let
  system = builtins.currentSystem;
  payload = i: builtins.derivation {
    name = "payload-${name}-${toString i}";
    inherit system nonce payloadSize;
    builder = "/bin/sh";
    args = [ "-c" "/bin/mkdir -p $out && /usr/bin/head -c $payloadSize /dev/urandom > $out/blob" ];
  };
  deps = builtins.genList payload (builtins.fromJSON payloads);
in builtins.derivation {
  inherit name system nonce stc apply;
  deps = builtins.concatStringsSep " " (map toString deps);
  builder = "/bin/sh";
  args = [ "-c" ''
    /bin/mkdir -p $out/bin
    echo "$deps" > $out/payloads
    { echo '#!/bin/sh'; echo "out=$out"; printf '%s\n' "$stc"; } > $out/bin/switch-to-configuration
    /bin/chmod +x $out/bin/switch-to-configuration
    if [ -n "$apply" ]; then
      { echo '#!/bin/sh'; echo "out=$out"; printf '%s\n' "$apply"; } > $out/bin/apply
      /bin/chmod +x $out/bin/apply
    fi
  '' ];
}
"""

_SWITCH_TO_CONFIGURATION = r"""
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
state=/var/lib/fake-nixos
action="$1"
mkdir -p "$state" /run
case "$action" in
  switch|boot|test|dry-activate) ;;
  *) echo "usage: switch-to-configuration switch|boot|test|dry-activate" >&2; exit 1 ;;
esac
echo "$action $out" >> "$state/activations"
if [ "$action" = dry-activate ]; then
  echo "would activate $out (now: $(readlink /run/current-system || echo none))"
  exit 0
fi
if [ "$action" = switch ] || [ "$action" = boot ]; then
  ln -sfn "$out" "$state/boot-default"
fi
if [ "$action" = switch ] || [ "$action" = test ]; then
  ln -sfn "$out" /run/current-system
  echo "activating the configuration $out..."
  @HOOK@
fi
if [ -n "@FAIL@" ] && [ "$action" != boot ]; then
  echo "starting the following units: broken.service" >&2
  echo "Job for broken.service failed because the control process exited with error code." >&2
  echo "warning: the following units failed: broken.service" >&2
  exit 4
fi
exit 0
"""

_APPLY = r"""
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
action="${1:-switch}"
mkdir -p /var/lib/fake-nixos
case "$action" in
  switch|boot) nix-env -p /nix/var/nix/profiles/system --set "$out" || exit 1 ;;
esac
echo "$action $out" >> /var/lib/fake-nixos/applied
exec "$out/bin/switch-to-configuration" "$action"
"""


def nix_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for the deployer's Nix commands with :data:`NIX_CONFIG`."""
    env = dict(os.environ if base is None else base)
    env["NIX_CONFIG"] = NIX_CONFIG + ("\n" + env["NIX_CONFIG"] if env.get("NIX_CONFIG") else "")
    return env


@attrs.frozen
class Toplevel:
    """A built test toplevel: its output path, its derivation, its closure."""

    path: str
    drv: str
    name: str

    def closure(self) -> list[str]:
        out = subprocess.run(
            ["nix-store", "--query", "--requisites", self.path],
            env=nix_env(), check=True, capture_output=True, text=True,
        ).stdout
        return out.split()

    def __str__(self) -> str:
        return self.path


def build_toplevel(
    name: str = "test",
    *,
    fail: bool = False,
    apply: bool = True,
    hook: str = "",
    payloads: int = 0,
    payload_size: int = 4096,
    nonce: str | None = None,
    realise: bool = True,
) -> Toplevel:
    """Build (or with ``realise=False`` only instantiate) a fake NixOS toplevel."""
    stc = _SWITCH_TO_CONFIGURATION.replace("@HOOK@", hook or ":").replace("@FAIL@", "1" if fail else "")
    args = {
        "name": f"nixos-system-{name}",
        "nonce": f"{_SESSION_NONCE}-{nonce or uuid.uuid4().hex[:8]}",
        "stc": stc,
        "apply": _APPLY if apply else "",
        "payloads": str(payloads),
        "payloadSize": str(payload_size),
    }
    argv = ["nix-instantiate", "--expr", _EXPRESSION]
    for key, value in args.items():
        argv += ["--argstr", key, value]
    drv = _run(argv).strip()
    path = json.loads(_run(["nix", "show-derivation", drv]))[drv]["outputs"]["out"]["path"]
    if realise:
        _run(["nix-store", "--realise", drv])
    return Toplevel(path=path, drv=drv, name=args["name"])


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, env=nix_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


# -- fake NixOS hosts ---------------------------------------------------------
class FakeNixos:
    """A test host (from ``ssh_hosts(..., own_root=True)``) made ready for Nix deploys.

    Its ``/etc/nix/nix.conf`` gets :data:`HOST_NIX_CONF`; everything else a
    deploy touches (its own ``/nix``, ``/run``, ``/var/lib``) is the host's own
    and read here from outside, so it works while the host is unreachable.
    """

    STATE = "/var/lib/fake-nixos"

    def __init__(self, host: Any) -> None:
        if getattr(host, "root", None) is None:
            raise ValueError("a fake NixOS host needs its own root: ssh_hosts(n, own_root=True)")
        self.host = host
        host.write_file("/etc/nix/nix.conf", HOST_NIX_CONF)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.host, name)

    def add_deploy_user(self, name: str = "deploy", *, sudo: bool = True) -> dict:
        """A non-root login for the deployer's key, with passwordless sudo (or none).

        Like a NixOS machine with a deploy user: the user is a trusted user of
        a ``nix-daemon`` now running on the host, so ``nix copy`` works as that
        user.  Returns ``ssh_input(user=name)``.
        """
        sudoers = f"echo '{name} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{name} && chmod 440 /etc/sudoers.d/{name}"
        self.host.write_file("/etc/nix/nix.conf", HOST_NIX_CONF + f"trusted-users = root {name}\n")
        self.host.run(
            f"id {name} >/dev/null 2>&1 || useradd -m -s /bin/sh -p '*' {name}; "
            # the test sshd reads every user's keys from root's authorized_keys
            "chmod 711 /root && chmod 755 /root/.ssh && chmod 644 /root/.ssh/authorized_keys; "
            + (sudoers + "; " if sudo else "")
            + "[ -S /nix/var/nix/daemon-socket/socket ] || "
            "{ mkdir -p /nix/var/nix/daemon-socket; nohup nix-daemon </dev/null >/var/log/nix-daemon.log 2>&1 & }"
        )
        socket = self.host.path("/nix/var/nix/daemon-socket/socket")
        self.wait_for(lambda: socket.exists(), timeout=10, what="nix-daemon socket")
        return self.host.ssh_input(user=name)

    def file(self, p: str) -> Path:
        """Host file ``p`` in the host's own layer (``/nix`` or the overlay's upper dir)."""
        if p.startswith("/nix/"):
            return self.host.path(p)
        return Path(self.host.root) / p.lstrip("/")

    def _link(self, p: str) -> str | None:
        f = self.file(p)
        return os.readlink(f) if os.path.islink(f) else None

    def current_system(self) -> str | None:
        """Where ``/run/current-system`` points, or None."""
        return self._link("/run/current-system")

    def boot_default(self) -> str | None:
        """What the fake boot loader would boot."""
        return self._link(f"{self.STATE}/boot-default")

    def generation(self, profile: str = "/nix/var/nix/profiles/system") -> int | None:
        link = self._link(profile)
        return int(link.rsplit("-", 2)[-2]) if link else None

    def profile_toplevel(self, profile: str = "/nix/var/nix/profiles/system") -> str | None:
        gen = self.generation(profile)
        return self._link(f"{profile}-{gen}-link") if gen is not None else None

    def activations(self) -> list[tuple[str, str]]:
        """Every ``switch-to-configuration`` call so far, as (action, toplevel)."""
        f = self.file(f"{self.STATE}/activations")
        if not f.exists():
            return []
        return [tuple(line.split(" ", 1)) for line in f.read_text().splitlines() if line]  # type: ignore[misc]

    def has_path(self, store_path: str) -> bool:
        """Whether ``store_path`` is in the host's own store."""
        return os.path.lexists(self.host.path(store_path))

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.host.name}: no {what} within {timeout}s")
            time.sleep(0.02)


#: Shell code for ``build_toplevel(hook=...)``: activation stops after moving
#: ``/run/current-system`` until the test writes the release file.
PAUSE_HOOK = (
    "touch /var/lib/fake-nixos/paused; i=0; "
    "while [ ! -e /var/lib/fake-nixos/release ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; "
    "rm -f /var/lib/fake-nixos/paused /var/lib/fake-nixos/release"
)


@pytest.fixture
def fake_nixos_hosts(ssh_hosts):
    """Factory of fake NixOS hosts: ``a, b = fake_nixos_hosts(2)`` (own root, own store)."""
    require_executable("nix", "nix-bin")

    def make(n: int = 1) -> list[FakeNixos]:
        return [FakeNixos(host) for host in ssh_hosts(n, own_root=True)]

    return make


@pytest.fixture(scope="session")
def toplevel_builder():
    """``build_toplevel`` with the prerequisites checked; toplevels are cached per name."""
    require_executable("nix", "nix-bin")
    built: dict[tuple, Toplevel] = {}

    def build(name: str = "test", **kwargs: Any) -> Toplevel:
        key = (name, tuple(sorted(kwargs.items())))
        if key not in built:
            built[key] = build_toplevel(name, **kwargs)
        return built[key]

    return build
