"""An emulated Garage inside a test host's own network namespace, reachable only through SSH.

:class:`InNamespace` starts ``python -m <module> --background`` (this package's
emulator, or garage_cluster's) under ``ip netns exec`` in the namespace of an
SSH test host (:class:`~fediversity_providers.testing.TestHost`): it listens
on that namespace's 127.0.0.1, which the deployer cannot reach, so a provider
that succeeds against it went through the SSH tunnel over the host's pinned
connection.  The test's own look at the admin API (:meth:`InNamespace.get`)
runs inside the namespace as well.  Needs root (``ip netns exec``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

__all__ = ["InNamespace", "ADMIN_PORT"]

#: The admin port Garage listens on by default (what the MVP's ``adminEndpoint`` names).
ADMIN_PORT = 3903


class InNamespace:
    """An emulated Garage served inside ``host``'s network namespace on its 127.0.0.1.

    ``module`` is the emulator to run (``...garage_bucket.testing`` or
    ``...garage_cluster.testing``), ``name`` its background name, ``args`` its
    flags.  The emulator's state (``FEDIVERSITY_TRYOUT_DIR``) is kept in
    ``directory`` on the deployer; its admin token is written to
    ``token_file`` (default ``directory/<name>-token``, mode 0600).  After
    start, :attr:`vars` holds its export lines (``FVP_GARAGE_S3`` ...) and
    :attr:`token` the token.  Call :meth:`stop` at the end.
    """

    def __init__(self, host: Any, directory: Path, module: str, name: str, *args: str,
                 token_file: Path | None = None) -> None:
        self.host, self.name = host, name
        self.env = {**os.environ, "FEDIVERSITY_TRYOUT_DIR": str(directory / "tryout")}
        self.token_file = Path(token_file) if token_file is not None else directory / f"{name}-token"
        done = subprocess.run([*self.argv(), sys.executable, "-m", module, "--background",
                               "--token-file", str(self.token_file), *args],
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        self.vars = {k: v for k, v in (shlex.split(line)[1].split("=", 1) for line in done.stdout.splitlines())}
        self.token = self.token_file.read_text().strip()

    def argv(self) -> list[str]:
        """The command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.host.netns]

    def python(self, code: str, *args: str) -> str:
        """Run ``code`` inside the namespace; its stdout."""
        done = subprocess.run([*self.argv(), sys.executable, "-c", textwrap.dedent(code), *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def get(self, path: str, port: int = ADMIN_PORT) -> Any:
        """An admin API GET from inside the namespace (the test's own look, not the provider's)."""
        return json.loads(self.python("""
            import sys, urllib.request
            r = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
            print(urllib.request.urlopen(r, timeout=10).read().decode())
        """, f"http://127.0.0.1:{port}{path}", self.token))

    def buckets(self) -> list:
        return self.get("/v2/ListBuckets")

    def keys(self) -> list:
        return self.get("/v2/ListKeys")

    def ssh_sessions(self) -> int:
        """Established TCP connections on the SSH port inside the namespace."""
        done = subprocess.run([*self.argv(), "ss", "-Htn", "state", "established", "( sport = :22 )"],
                              capture_output=True, text=True, check=True)
        return len(done.stdout.splitlines())

    def stop(self) -> None:
        subprocess.run([sys.executable, "-m", "fediversity_providers.testing", "stop", self.name],
                       env=self.env, capture_output=True, timeout=60)
