"""``FEDIVERSITY_PROVIDERS_TIMEOUT`` binds the machine-facing providers too.

Each case runs the real CLI in its own process, as NixOps4 would, against a
real sshd test host that misbehaves: an activation that never ends, a copy
whose machine vanishes half-way, a machine that accepts TCP and never speaks,
a blackholed one.  The request must end within the deadline plus the margin
the README's security model states, with an error that says what was under way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

SECONDS = 5
#: The README's margin: clean-up and the process's own start and exit.
MARGIN = 3.0


def timed_create(type_name: str, inputs: dict) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "FEDIVERSITY_PROVIDERS_TIMEOUT": str(SECONDS)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fediversity_providers", "create", "--type", type_name,
                           "--stateful", "--inputs-json", json.dumps(inputs)],
                          capture_output=True, text=True, timeout=120, env=env)
    return done, time.monotonic() - started


def assert_timed_out(done: subprocess.CompletedProcess, took: float, under_way: str) -> None:
    assert done.returncode != 0, done.stdout
    assert took < SECONDS + MARGIN, f"took {took:.1f}s"
    assert "timed out" in done.stderr and "FEDIVERSITY_PROVIDERS_TIMEOUT" in done.stderr, done.stderr
    assert under_way in done.stderr, done.stderr


def test_an_activation_that_hangs_ends_at_the_deadline(fake_nixos_hosts, toplevel_builder):
    host, = fake_nixos_hosts(1)
    hanging = toplevel_builder("hangs", hook="sleep 600")
    done, took = timed_create("nixos_config", {"ssh": host.ssh_input(connectTimeout=3), "toplevel": str(hanging)})
    assert_timed_out(done, took, "activating")
    assert "may have gone on on the machine" in done.stderr


def test_a_copy_whose_machine_vanishes_ends_at_the_deadline(fake_nixos_hosts, toplevel_builder):
    host, = fake_nixos_hosts(1)
    big = toplevel_builder("big", payloads=12, payload_size=16 * 1024 * 1024)
    first_payload = big.closure()[0]

    def cut_when_copying():
        host.wait_for(lambda: host.has_path(first_payload), timeout=30, what="copy")
        host.make_unreachable()

    cutter = threading.Thread(target=cut_when_copying)
    cutter.start()
    try:
        # ssh alone would notice only after 3 keep-alives of 20 s.
        done, took = timed_create("nixos_config", {"ssh": host.ssh_input(connectTimeout=60), "toplevel": str(big)})
    finally:
        cutter.join()
        host.make_reachable()
    assert_timed_out(done, took, "copying the closure")
    assert "nothing was activated" in done.stderr
    assert host.current_system() is None


@pytest.mark.parametrize("provider", ["nixos_config", "existing_vm"])
@pytest.mark.parametrize("how", ["silent", "blackholed"])
def test_a_machine_that_never_answers_ends_at_the_deadline(fake_nixos_hosts, toplevel_builder, provider, how):
    host, = fake_nixos_hosts(1)
    inputs: dict = {"ssh": host.ssh_input(connectTimeout=60)}
    if provider == "nixos_config":
        inputs["toplevel"] = str(toplevel_builder("one", payloads=1))
    else:
        inputs["retryTimeout"] = 120
    if how == "silent":
        host.hang()
    else:
        host.make_unreachable()
    try:
        done, took = timed_create(provider, inputs)
    finally:
        host.make_reachable()
    assert_timed_out(done, took, "copying the closure" if provider == "nixos_config" else "connecting to")


class SlowProxy:
    """A TCP proxy in front of a real sshd that delays each answer of the server but the first by ``delay``."""

    def __init__(self, host, delay: float) -> None:
        import socket

        self.delay, self.target = delay, (host.address, host.port)
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self.pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, True), daemon=True).start()

    def pump(self, a, b, slow: bool) -> None:
        import socket

        first = True
        try:
            while data := a.recv(65536):
                if slow and not first:
                    time.sleep(self.delay)
                first = False
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def test_a_machine_that_answers_slowly_is_bounded_as_a_whole(ssh_hosts):
    host, = ssh_hosts(1)
    proxy = SlowProxy(host, delay=2.0)
    try:
        ssh = {**host.ssh_input(), "host": "127.0.0.1", "port": proxy.port, "connectTimeout": 30}
        # Each phase (key exchange, login, the facts) within its own limit took about 16 s.
        done, took = timed_create("existing_vm", {"ssh": ssh})
        assert_timed_out(done, took, "connecting to")
        env = {**os.environ}
        env.pop("FEDIVERSITY_PROVIDERS_TIMEOUT", None)
        started = time.monotonic()
        bounded = subprocess.run([sys.executable, "-m", "fediversity_providers", "create", "--type", "existing_vm",
                                  "--inputs-json", json.dumps({"ssh": {**ssh, "connectTimeout": 3}})],
                                 capture_output=True, text=True, timeout=120, env=env)
        assert time.monotonic() - started < 3 + MARGIN
        assert bounded.returncode == 1 and ("longer than 3s" in bounded.stderr or "within 3s" in bounded.stderr), \
            bounded.stderr
    finally:
        proxy.close()
