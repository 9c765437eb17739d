"""One existing_vm create against a test host, relative to a bare `ssh ... true`.

Brings up one SSH test host (needs root, openssh-server, iproute2), then
alternates, N times each, so that machine noise hits all alike:

- baseline: OpenSSH's `ssh -i KEY ... root@HOST true`, pinned to the host key;
- cold create: a fresh `serve` process answering one existing_vm create, then
  EOF (what NixOps4 does for each resource operation);
- warm create: one create through the in-process engine (the provider's own
  connection and fact gathering, without interpreter start and imports).

Prints medians and the ratios to the baseline (goal: cold create < 1.5x),
and, to show where a cold create's time goes, a bare interpreter, a serve
that answers a request for no type, and an interpreter importing fabric.

Usage: python benchmarks/bench_existing_vm.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from fediversity_providers.testing.hosts import SSHHostFactory
from fediversity_providers.testing import InProcessDriver

SERVE = [sys.executable, "-m", "fediversity_providers", "serve"]


def timed(argv: list[str], stdin: bytes = b"") -> tuple[float, bytes]:
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, check=True)
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    with SSHHostFactory() as hosts, InProcessDriver() as driver:
        (host,) = hosts(1, own_root=True)
        inputs = {"ssh": host.ssh_input()}
        request = (json.dumps({"createResourceRequest": {"type": "existing_vm", "isStateful": False,
                                                         "inputProperties": inputs}}) + "\n").encode()
        driver.create("existing_vm", inputs)  # load fabric once in this process
        other = (json.dumps({"readResourceRequest": {"resource": {"type": "none", "inputProperties": {}}}})
                 + "\n").encode()
        bare, cold, warm, python, serve, fabric = [], [], [], [], [], []
        for _ in range(args.runs):
            bare.append(timed([*host.ssh_argv(), "true"])[0])
            seconds, out = timed(SERVE, request)
            if b"createResourceResponse" not in out:
                sys.exit(f"create failed: {out.decode()}")
            cold.append(seconds)
            start = time.perf_counter()
            driver.create("existing_vm", inputs)
            warm.append(time.perf_counter() - start)
            python.append(timed([sys.executable, "-c", "pass"])[0])
            serve.append(timed(SERVE, other)[0])
            fabric.append(timed([sys.executable, "-c", "import fabric"])[0])

    b, c, w, p, s, f = (statistics.median(x) for x in (bare, cold, warm, python, serve, fabric))
    print(f"runs: {args.runs} each, alternating; medians")
    print(f"bare ssh true:            {b * 1000:7.1f} ms   1.00x")
    print(f"existing_vm create, cold: {c * 1000:7.1f} ms   {c / b:.2f}x   (fresh serve process)")
    print(f"existing_vm create, warm: {w * 1000:7.1f} ms   {w / b:.2f}x   (in-process engine)")
    print("where a cold create's time goes:")
    print(f"python3 -c pass:          {p * 1000:7.1f} ms   {p / b:.2f}x   (interpreter start alone)")
    print(f"serve, no existing_vm:    {s * 1000:7.1f} ms   {s / b:.2f}x   (a serve answering an unknown type)")
    print(f"python3 -c import fabric: {f * 1000:7.1f} ms   {f / b:.2f}x   (interpreter + fabric/paramiko/invoke)")


if __name__ == "__main__":
    main()
