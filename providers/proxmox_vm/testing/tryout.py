"""Serve the Proxmox VE API emulator by hand, to try ``proxmox_vm``'s ``api`` backend.

``eval "$(python -m fediversity_providers.providers.proxmox_vm.testing --background)"``
prints FVP_PVE_API (the ``api`` input object as JSON, its token secret in a
file), FVP_PVE_URL and FVP_PVE_NODE; ``python -m fediversity_providers.testing
stop proxmox`` stops it.  Without ``--background`` it serves until interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .emulator import PveEmulator

__all__ = ["main"]


def _start(secret_file: Path):
    def start():
        emulator = PveEmulator().start()
        secret_file.write_text(emulator.secret + "\n")
        secret_file.chmod(0o600)
        api = {"url": emulator.url, "tokenId": emulator.token_id, "tokenSecretFile": str(secret_file),
               "verifyTls": False}
        return {"FVP_PVE_API": json.dumps(api), "FVP_PVE_URL": emulator.url, "FVP_PVE_NODE": "pve"}, emulator.stop
    return start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fediversity_providers.providers.proxmox_vm.testing",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--background", action="store_true",
                        help="detach, print export lines for eval, keep serving until stopped")
    parser.add_argument("--secret-file", help="where to write the API token secret "
                                              "(default: a file beside the keeper's log)")
    args = parser.parse_args(argv)
    from fediversity_providers.testing import background

    secret_file = Path(args.secret_file or background.state_dir() / "pve-token-secret")
    if args.background:
        try:
            found = background.keep("proxmox", _start(secret_file))
        except RuntimeError as error:
            print(f"{parser.prog}: {error}", file=sys.stderr)
            return 1
        sys.stdout.write(background.exports(found))
        return 0
    found, close = _start(secret_file)()
    for key, value in found.items():
        print(f"{key}={value}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        close()
    return 0
