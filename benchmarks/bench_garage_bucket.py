"""Creating garage_bucket resources: one after the other vs 4 provider processes at once, as ratios.

NixOps4 starts one provider process per resource operation.  This script
creates N buckets (each with one key that may write) against the test kit's
Garage admin API emulator (v2) and a moto S3 server on loopback, each create
in its own `fediversity-provider serve` process, first serially, then with 4
processes running concurrently; then deletes them all.  Printed, all measured
in this one run:

- serial / concurrent wall time (the speed-up of 4 concurrent processes), measured
  in alternating batches so that other load on the machine hits both alike;
- the time of one create (serial) against a bare `python3 -c pass`;
- admin requests per create.

Usage: python benchmarks/bench_garage_bucket.py [--buckets 20] [--workers 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fediversity_providers.providers.garage_bucket.testing import GarageEmulator, MotoS3
from fediversity_providers.core import messages as m
from fediversity_providers.core.client import ProviderProcess


def create_one(inputs: dict) -> dict:
    with ProviderProcess(stderr=subprocess.DEVNULL) as process:
        return process.request(m.CreateResourceRequest("garage_bucket", inputs, True)).output_properties


def delete_one(args: tuple[dict, dict]) -> None:
    with ProviderProcess(stderr=subprocess.DEVNULL) as process:
        process.request(m.DeleteResourceRequest(m.ResourceState("garage_bucket", *args)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buckets", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    s3 = MotoS3()
    emu = GarageEmulator(2, s3=s3)
    token = Path(tempfile.mkdtemp()) / "token"
    token.write_text(emu.token)

    def inputs(prefix: str, i: int) -> dict:
        return {"adminEndpoint": emu.endpoint, "adminTokenFile": str(token), "adminApiVersion": "v2",
                "s3Endpoint": emu.s3_endpoint, "globalAlias": f"{prefix}-{i:03d}",
                "keys": [{"name": "app", "write": True}]}

    try:
        baseline = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            baseline.append(time.perf_counter() - start)

        # Alternate batches of `workers` creates, serial then concurrent, so that
        # load from elsewhere on the machine hits both alike.
        serial_inputs = [inputs("serial", i) for i in range(args.buckets)]
        concurrent_inputs = [inputs("concurrent", i) for i in range(args.buckets)]
        serial_outputs: list[dict] = []
        concurrent_outputs: list[dict] = []
        serial = concurrent = 0.0
        each = []
        requests = 0
        with ThreadPoolExecutor(args.workers) as pool:
            for start_at in range(0, args.buckets, args.workers):
                batch = slice(start_at, start_at + args.workers)
                before = emu.count()
                t0 = time.perf_counter()
                for one in serial_inputs[batch]:
                    t1 = time.perf_counter()
                    serial_outputs.append(create_one(one))
                    each.append(time.perf_counter() - t1)
                serial += time.perf_counter() - t0
                requests += emu.count() - before
                t0 = time.perf_counter()
                concurrent_outputs.extend(pool.map(create_one, concurrent_inputs[batch]))
                concurrent += time.perf_counter() - t0
        requests /= args.buckets

        assert len(emu.buckets) == 2 * args.buckets and len(emu.keys) == 2 * args.buckets
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(delete_one, zip(serial_inputs + concurrent_inputs, serial_outputs + concurrent_outputs)))
        assert not emu.buckets and not emu.keys and not emu.violations, emu.violations

        print(f"{args.buckets} buckets, each with one key, one provider process per create")
        print(f"serial / {args.workers} concurrent processes: {serial / concurrent:.2f}x faster concurrently")
        print(f"(serial {serial:.1f} s, concurrent {concurrent:.1f} s on this machine)")
        print(f"one create / bare interpreter start: {statistics.median(each) / statistics.median(baseline):.1f}x")
        print(f"admin requests per create: {requests:.1f}")
    finally:
        emu.close()
        s3.stop()


if __name__ == "__main__":
    main()
