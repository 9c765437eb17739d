"""``python -m fediversity_providers.testing``: test environments for trying the docs by hand.

    eval "$(python -m fediversity_providers.testing ssh-host)"    # FVP_SSH, FVP_HOST, ...
    eval "$(python -m fediversity_providers.testing toplevel)"    # FVP_TOPLEVEL
    python -m fediversity_providers.testing stop ssh-host

Each command prints ``export`` lines and returns once the environment is up;
it keeps running in the background until ``stop``.  Providers bring their
own (``python -m fediversity_providers.providers.garage_bucket.testing
--background``, say); ``stop`` and ``list`` handle theirs too.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import background


def _ssh_host(own_root: bool, nixos: bool):
    def start():
        from .hosts import SSHHostFactory, require_ssh_hosts

        require_ssh_hosts()
        factory = SSHHostFactory()
        try:
            (host,) = factory(1, own_root=own_root or nixos)
            if nixos:
                from .nixos import FakeNixos

                FakeNixos(host)
        except BaseException:
            factory.close()
            raise
        found = {
            "FVP_SSH": json.dumps(host.ssh_input(connectTimeout=5)),
            "FVP_HOST": host.address,
            "FVP_HOST_PUBLIC_KEY": host.host_public_key,
            "FVP_PRIVATE_KEY_FILE": str(host.private_key_file),
        }
        if host.root is not None:
            found["FVP_HOST_ROOT"] = str(host.root)
        if nixos:
            from .nixos import nix_env

            found["NIX_CONFIG"] = nix_env({})["NIX_CONFIG"]
        return found, factory.close
    return start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fediversity_providers.testing",
        description="Bring up a test environment in the background and print the shell variables that "
                    "describe it (use with eval). Needs root, openssh-server and iproute2 for SSH hosts.")
    sub = parser.add_subparsers(dest="command", required=True)
    host = sub.add_parser("ssh-host", help="one real SSH test host (sshd in its own network namespace)",
                          description="Prints FVP_SSH (the ssh input object as JSON), FVP_HOST, "
                                      "FVP_HOST_PUBLIC_KEY, FVP_PRIVATE_KEY_FILE and FVP_HOST_ROOT.")
    host.add_argument("--name", default="ssh-host", help="the keeper's name, to run several (default ssh-host)")
    host.add_argument("--own-root", action="store_true", help="give the host its own root file system")
    host.add_argument("--nixos", action="store_true",
                      help="a fake NixOS host (own root and /nix) that nixos_config can deploy to")
    top = sub.add_parser("toplevel", help="build a fake NixOS system toplevel with Nix (no nixpkgs needed)",
                         description="Builds a toplevel whose switch-to-configuration points /run/current-system "
                                     "at itself, and prints FVP_TOPLEVEL (its store path) and NIX_CONFIG.")
    top.add_argument("--name", default="demo", help="the system's name (default demo)")
    top.add_argument("--fail", action="store_true", help="a toplevel whose activation fails")
    halt = sub.add_parser("stop", help="stop a background environment", description="Stop environments by name.")
    halt.add_argument("names", nargs="*", help="names to stop (default: all)")
    sub.add_parser("list", help="the background environments running now")
    args = parser.parse_args(argv)

    if args.command == "ssh-host":
        try:
            found = background.keep(args.name, _ssh_host(args.own_root, args.nixos))
        except RuntimeError as error:
            print(f"python -m fediversity_providers.testing: {error}", file=sys.stderr)
            return 1
        sys.stdout.write(background.exports(found))
        print(f"# stop it with: python -m fediversity_providers.testing stop {args.name}", file=sys.stderr)
        return 0
    if args.command == "toplevel":
        from .nixos import build_toplevel, nix_env
        from .prereq import require_executable

        require_executable("nix", "nix-bin")
        try:
            built = build_toplevel(args.name, fail=args.fail)
        except RuntimeError as error:
            print(f"python -m fediversity_providers.testing: {error}", file=sys.stderr)
            return 1
        sys.stdout.write(background.exports({"FVP_TOPLEVEL": built.path, "NIX_CONFIG": nix_env({})["NIX_CONFIG"]}))
        return 0
    if args.command == "stop":
        names = args.names or sorted(background.running())
        for name in names:
            if not background.stop(name):
                print(f"{name}: not running", file=sys.stderr)
        return 0
    for name, pid in sorted(background.running().items()):
        print(f"{name}\t{pid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
