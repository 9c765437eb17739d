"""Cold start and warm throughput of `fediversity-provider serve`, as ratios.

NixOps4 starts one provider process per resource operation, so the cost that
matters is a fresh process answering one request.  Measured in one run,
alternating with the baseline so that machine noise hits both alike:

- cold start: one `serve` process answering one proxmox_vm create (stub
  backend), then EOF, against a bare `python3 -c pass` of the same
  interpreter: median of N alternating runs each, as a ratio;
- warm throughput: read requests per second answered by one process, and how
  many cold processes that equals.

Usage: python benchmarks/bench_cold_start.py [--runs 25] [--reads 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# What NixOps4 runs: the console script next to this interpreter (python -m
# would add runpy's own imports), else the module.
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "fediversity-provider")
SERVE = [_SCRIPT, "serve"] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "fediversity_providers", "serve"]


def vm_inputs(state_dir: str, name: str) -> dict:
    return {"node": "pve", "name": name, "template": "debian-12-cloud", "cores": 1, "memoryMiB": 1024,
            "diskGiB": 10, "sshAuthorizedKeys": [], "ipConfig": "dhcp", "started": True,
            "stub": {"stateDir": state_dir}}


def timed(argv: list[str], stdin: bytes = b"") -> tuple[float, float, bytes]:
    """Wall seconds, CPU seconds (user + system, which a loaded machine inflates less), stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--reads", type=int, default=3000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as state_dir:
        bare, cold, bare_cpu, cold_cpu = [], [], [], []
        outputs = None
        for i in range(args.runs):
            wall, cpu, _ = timed([sys.executable, "-c", "pass"])
            bare.append(wall)
            bare_cpu.append(cpu)
            request = {"createResourceRequest": {"type": "proxmox_vm", "isStateful": True,
                                                 "inputProperties": vm_inputs(state_dir, f"vm{i}")}}
            wall, cpu, out = timed(SERVE, (json.dumps(request) + "\n").encode())
            answer = json.loads(out)
            if "createResourceResponse" not in answer:
                sys.exit(f"create failed: {answer}")
            outputs = answer["createResourceResponse"]["outputProperties"]
            cold.append(wall)
            cold_cpu.append(cpu)

        read = {"readResourceRequest": {"resource": {"type": "proxmox_vm", "inputProperties": vm_inputs(state_dir, f"vm{args.runs - 1}"),
                                                     "outputProperties": outputs}}}
        line = (json.dumps(read) + "\n").encode()
        process = subprocess.Popen(SERVE, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        process.stdin.write(line)  # warm up: plugins loaded, validator built
        process.stdin.flush()
        process.stdout.readline()
        start = time.perf_counter()
        for _ in range(args.reads):
            process.stdin.write(line)
            process.stdin.flush()
            if b"readResourceResponse" not in process.stdout.readline():
                sys.exit("a warm read failed")
        warm = time.perf_counter() - start
        process.stdin.close()
        process.wait()

    bare_median, cold_median = statistics.median(bare), statistics.median(cold)
    per_second = args.reads / warm
    cpu_ratio = statistics.median(cold_cpu) / statistics.median(bare_cpu)
    print(f"cold start: serve + one proxmox_vm create = {cold_median / bare_median:.2f}x a bare "
          f"'python3 -c pass' in wall time, {cpu_ratio:.2f}x in CPU time "
          f"(medians of {args.runs} alternating runs each; {' '.join(os.path.basename(a) for a in SERVE)})")
    print(f"warm: {per_second:.0f} proxmox_vm reads per second on one process "
          f"= {per_second * cold_median:.0f}x the rate of cold processes")


if __name__ == "__main__":
    main()
