"""Serve an emulated Garage cluster in the background, to try garage_cluster by hand.

``eval "$(python -m fediversity_providers.providers.garage_cluster.testing --background)"``
starts ``--nodes`` nodes (default 4; none connected, empty layout) in a
detached keeper and prints ``export`` lines: ``FVP_GARAGE_ADMIN`` (node 1's
admin API), ``FVP_GARAGE_TOKEN_FILE``, and per node ``FVP_GARAGE_RPC_<n>``
and ``FVP_GARAGE_ADMIN_<n>``.  ``python -m fediversity_providers.testing stop
garage-cluster`` stops it.  Without ``--background`` it serves in the
foreground until interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from fediversity_providers.providers.garage_bucket.testing.cluster import GarageCluster


def _start(nodes: int, version: int, rf: int, token_file: Path):
    cluster = GarageCluster(nodes, garage_version=version, replication_factor=rf)
    token_file.write_text(cluster.token + "\n")
    token_file.chmod(0o600)
    found = {"FVP_GARAGE_ADMIN": cluster.endpoint, "FVP_GARAGE_TOKEN_FILE": str(token_file)}
    for n, node in enumerate(cluster.nodes, 1):
        found[f"FVP_GARAGE_RPC_{n}"] = node.rpc_addr
        found[f"FVP_GARAGE_ADMIN_{n}"] = node.endpoint
    return cluster, found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fediversity_providers.providers.garage_cluster.testing",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4, help="how many nodes (default 4)")
    parser.add_argument("--garage-version", type=int, choices=(1, 2), default=2,
                        help="1 (Garage 1.x, admin API v1) or 2 (Garage 2.x, v2; default)")
    parser.add_argument("--replication-factor", type=int, default=3, help="the nodes' replication_factor (default 3)")
    parser.add_argument("--token-file", help="where to write the admin token (default with --background: "
                                             "a file beside the keeper's log)")
    parser.add_argument("--background", action="store_true",
                        help="detach, print export lines for eval, keep serving until stopped")
    args = parser.parse_args(argv)
    if args.background:
        from fediversity_providers.testing import background

        token_file = Path(args.token_file or background.state_dir() / "garage-cluster-admin-token")

        def start():
            cluster, found = _start(args.nodes, args.garage_version, args.replication_factor, token_file)
            return found, cluster.close
        try:
            found = background.keep("garage-cluster", start)
        except RuntimeError as error:
            raise SystemExit(f"{parser.prog}: {error}") from None
        sys.stdout.write(background.exports(found))
        return
    if not args.token_file:
        parser.error("--token-file is required in the foreground")
    cluster, found = _start(args.nodes, args.garage_version, args.replication_factor, Path(args.token_file))
    for key, value in found.items():
        print(f"{key}={value}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.close()
        for line in cluster.violations:
            print("outside the documents:", line, flush=True)


if __name__ == "__main__":
    main()
