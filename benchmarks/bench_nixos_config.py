"""Deploying one NixOS toplevel to 1 host vs to 4 hosts at once, as a ratio.

NixOps4 runs one provider process per resource, so a deployment of N machines
is N concurrent provider processes.  Each round brings up fresh fake NixOS
hosts (real sshd, own root and own Nix store) and deploys a fresh toplevel
(a closure of several paths) by starting `fediversity-provider serve` and
sending it one createResourceRequest on stdin, as NixOps4 does:

- baseline: one provider process deploying to 1 host;
- measured: four provider processes at once, each deploying to its own host.

Both are timed in the same round, alternating their order, and the median of
the per-round ratios is reported (goal: under 2, i.e. 4 hosts in less than
twice the time of 1).  Needs root, openssh-server, iproute2, nix-bin.

Usage: python benchmarks/bench_nixos_config.py [--rounds 5] [--payloads 6] [--payload-kib 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from fediversity_providers.testing.hosts import SSHHostFactory
from fediversity_providers.testing.nixos import FakeNixos, build_toplevel

SERVE = [sys.executable, "-m", "fediversity_providers", "serve"]


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


BUSY: list[tuple[int, float]] = []  # (hosts, machine busy fraction during the deploy)


def deploy_all(hosts: list[FakeNixos], toplevel: str) -> float:
    """Deploy ``toplevel`` to every host, one provider process per host; seconds taken."""
    busy0, total0 = cpu_times()
    start = time.perf_counter()
    procs = []
    for host in hosts:
        request = {"createResourceRequest": {"type": "nixos_config", "isStateful": True,
                                             "inputProperties": {"ssh": host.ssh_input(), "toplevel": toplevel}}}
        proc = subprocess.Popen(SERVE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.close()
        procs.append(proc)
    for proc, host in zip(procs, hosts):
        out = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait()
        response = json.loads(out.splitlines()[0]) if out else {}
        outputs = response.get("createResourceResponse", {}).get("outputProperties")
        if proc.returncode != 0 or outputs is None:
            raise SystemExit(f"deploy to {host.name} failed: {response}\n{err.decode()}")
        if outputs["toplevel"] != toplevel or host.current_system() != toplevel:
            raise SystemExit(f"{host.name} does not run {toplevel}")
    elapsed = time.perf_counter() - start
    busy1, total1 = cpu_times()
    BUSY.append((len(hosts), (busy1 - busy0) / max(1, total1 - total0)))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--payloads", type=int, default=6, help="extra store paths in the closure")
    parser.add_argument("--payload-kib", type=int, default=1024, help="size of each extra path")
    args = parser.parse_args()

    print(f"building {2 * args.rounds} toplevels ({args.payloads + 1} paths, "
          f"{args.payloads} of {args.payload_kib} KiB)...", file=sys.stderr)
    toplevels = [
        build_toplevel(f"bench-{i}", payloads=args.payloads, payload_size=args.payload_kib * 1024).path
        for i in range(2 * args.rounds)
    ]
    ones, fours, ratios = [], [], []
    for r in range(args.rounds):
        with SSHHostFactory() as factory:
            hosts = [FakeNixos(h) for h in factory(5, own_root=True)]
            single, group = hosts[:1], hosts[1:]
            if r % 2:
                four = deploy_all(group, toplevels[2 * r + 1])
                one = deploy_all(single, toplevels[2 * r])
            else:
                one = deploy_all(single, toplevels[2 * r])
                four = deploy_all(group, toplevels[2 * r + 1])
        ones.append(one)
        fours.append(four)
        ratios.append(four / one)
        print(f"round {r + 1}: 1 host {one:.2f}s, 4 hosts {four:.2f}s, ratio {four / one:.2f}", file=sys.stderr)

    ratio = statistics.median(ratios)
    print(f"1 host:  median {statistics.median(ones):.2f}s")
    print(f"4 hosts: median {statistics.median(fours):.2f}s (4 concurrent provider processes)")
    print(f"ratio 4 hosts / 1 host: {ratio:.2f} (goal < 2.0: {'met' if ratio < 2 else 'NOT met'})")
    for n in (1, 4):
        busy = statistics.median(b for hosts, b in BUSY if hosts == n)
        print(f"machine CPU busy while deploying to {n} host{'s' if n > 1 else ''}: {busy:.0%} "
              f"of {os.cpu_count()} CPUs (everything running, not only this benchmark)")


if __name__ == "__main__":
    main()
