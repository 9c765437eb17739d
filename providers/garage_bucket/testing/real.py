"""A real Garage started from a binary (``GARAGE_BIN``), single node, on loopback.

Used by the ``garage`` fixture when ``GARAGE_BIN`` is set, so that the tests
written against the emulator run against Garage itself too.
"""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

__all__ = ["RealGarage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RealGarage:
    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = str(binary)
        workdir.mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_hex(16)
        rpc, s3, web, admin = (_free_port() for _ in range(4))
        self.config = workdir / "garage.toml"
        self.config.write_text(f"""
metadata_dir = "{workdir / 'meta'}"
data_dir = "{workdir / 'data'}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secrets.token_hex(32)}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[s3_web]
bind_addr = "127.0.0.1:{web}"
root_domain = ".web.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{self.token}"
""")
        self.admin_endpoint = f"http://127.0.0.1:{admin}"
        self.s3_endpoint = f"http://127.0.0.1:{s3}"
        found = re.search(r"\bv(\d+)\.", self._run("--version"))
        self.api_version = "v2" if found and int(found.group(1)) >= 2 else "v1"
        self.log = open(workdir / "garage.log", "wb")
        self.process = subprocess.Popen([self.binary, "-c", str(self.config), "server"],
                                        stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self._wait()
            node = self._run("node", "id", "-q").strip().split("@")[0]
            self._run("layout", "assign", "-z", "dc1", "-c", "1G", node)
            self._run("layout", "apply", "--version", "1")
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _run(self, *args: str) -> str:
        return subprocess.run([self.binary, "-c", str(self.config), *args], check=True, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=60).stdout

    def _wait(self) -> None:
        for _ in range(100):
            try:
                self._run("status")
                return
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        raise RuntimeError("garage did not start")

    def _wait_healthy(self) -> None:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"{self.admin_endpoint}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("garage did not become healthy")

    def stop(self) -> None:
        if getattr(self, "process", None) and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "log", None):
            self.log.close()
