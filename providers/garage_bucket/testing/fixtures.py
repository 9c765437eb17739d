"""A stateful emulator of Garage's admin API (v1 and v2), and pytest fixtures for it.

No Garage binary is needed: :class:`GarageEmulator` serves the admin API on
127.0.0.1 from a thread and keeps buckets, aliases, keys, permissions, quotas
and website settings.  Buckets are also made on an S3 server (moto, on
loopback) under their global alias, so an S3 client does real HTTP for CORS,
lifecycle and objects, and the emulator counts objects and refuses to delete a
non-empty bucket as Garage does.

Every request it receives and every response it gives is checked against
Garage's official OpenAPI documents (:mod:`.openapi`); a request that
does not conform is answered 400 and recorded in ``violations`` (the fixtures
fail the test on any).  Fault switches (:meth:`GarageEmulator.fault`) make it
answer 5xx, answer slowly, drop the connection before doing anything, or do
the work and drop the answer.

``garage_version=2`` serves ``/v2/...`` and (like Garage 2.x) ``/v1/...``
without v1's deletes; ``garage_version=1`` serves only ``/v1/...``.
"""

from __future__ import annotations

import os
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from .emulator import Fault, GarageEmulator, MotoS3

__all__ = ["GarageEmulator", "MotoS3", "Fault", "GarageTarget", "garage_s3", "garage", "garage_emulator"]


# -- pytest fixtures ---------------------------------------------------------------------------


class GarageTarget:
    """Where a test's provider talks to: an emulated Garage (``emulator`` set) or a real one."""

    def __init__(self, *, admin_endpoint: str, s3_endpoint: str, token: str, token_file: Path,
                 api_version: str, emulator: GarageEmulator | None = None, region: str = "garage") -> None:
        self.admin_endpoint, self.s3_endpoint = admin_endpoint, s3_endpoint
        self.token, self.token_file, self.api_version = token, token_file, api_version
        self.emulator, self.region = emulator, region

    def inputs(self, alias: str, **extra: Any) -> dict:
        """Inputs of a garage_bucket resource on this Garage."""
        inputs = {"adminEndpoint": self.admin_endpoint, "adminTokenFile": str(self.token_file),
                  "adminApiVersion": self.api_version, "s3Endpoint": self.s3_endpoint,
                  "region": self.region, "globalAlias": alias}
        inputs.update(extra)
        return inputs

    def require_emulator(self) -> GarageEmulator:
        """The emulator; tests of fault switches skip against a real Garage."""
        if self.emulator is None:
            pytest.skip("fault switches and request counts need the emulator")
        return self.emulator

    def admin(self):
        """An admin client on this Garage (for setting up and checking state)."""
        from fediversity_providers.providers.garage_bucket import admin

        return admin.connect(self.admin_endpoint, self.token, self.api_version, retry_timeout=5)

    def bucket_ids(self) -> set[str]:
        if self.emulator is not None:
            return set(self.emulator.buckets)
        c = self.admin()
        path = "/v2/ListBuckets" if c.version == "v2" else "/v1/bucket"
        query = None if c.version == "v2" else {"list": ""}
        return {b["id"] for b in c.t.call("ListBuckets", "GET", path, query)}

    def key_ids(self) -> set[str]:
        if self.emulator is not None:
            return set(self.emulator.keys)
        return {k["id"] for k in self.admin().list_keys()}

    def s3(self, access_key: str, secret_key: str):
        """A minio client on the S3 endpoint with a key's credentials."""
        from minio import Minio

        url = urllib.parse.urlsplit(self.s3_endpoint)
        return Minio(url.netloc, access_key=access_key, secret_key=secret_key, secure=False, region=self.region)


@pytest.fixture(scope="session")
def garage_s3():
    """A moto S3 server on 127.0.0.1 for the whole session."""
    server = MotoS3()
    yield server
    server.stop()


def _garage_params() -> list[str]:
    params = ["v1", "v2"]
    if os.environ.get("GARAGE_BIN"):
        params.append("real")
    return params


@pytest.fixture
def garage_emulator(garage_s3, request):
    """An emulated Garage 2.x (``garage_emulator.garage_version`` can be set to 1 before use)."""
    emu = GarageEmulator(2, s3=garage_s3)
    yield emu
    emu.close()
    assert not emu.violations, "admin API traffic outside the official documents:\n" + "\n".join(emu.violations)
    refused = emu.s3_gate.refused if emu.s3_gate is not None else []
    assert not refused, "S3 requests Garage would refuse:\n" + "\n".join(refused)


@pytest.fixture(params=_garage_params())
def garage(request, garage_s3, tmp_path):
    """A Garage for a test: emulated Garage 1.x speaking v1, emulated 2.x speaking v2, and with
    ``GARAGE_BIN`` set, a real Garage started from that binary."""
    token_file = tmp_path / "garage-admin-token"
    if request.param == "real":
        from .real import RealGarage

        real = RealGarage(Path(os.environ["GARAGE_BIN"]), tmp_path / "garage")
        try:
            token_file.write_text(real.token + "\n")
            yield GarageTarget(admin_endpoint=real.admin_endpoint, s3_endpoint=real.s3_endpoint,
                               token=real.token, token_file=token_file, api_version=real.api_version)
        finally:
            real.stop()
        return
    emu = GarageEmulator(1 if request.param == "v1" else 2, s3=garage_s3)
    token_file.write_text(emu.token + "\n")
    try:
        yield GarageTarget(admin_endpoint=emu.endpoint, s3_endpoint=emu.s3_endpoint, token=emu.token,
                           token_file=token_file, api_version=request.param, emulator=emu)
    finally:
        emu.close()
    assert not emu.violations, "admin API traffic outside the official documents:\n" + "\n".join(emu.violations)
    refused = emu.s3_gate.refused if emu.s3_gate is not None else []
    assert not refused, "S3 requests Garage would refuse:\n" + "\n".join(refused)


def main(argv: list[str] | None = None) -> None:
    """Serve an emulated Garage (admin API and S3), to try the provider by hand.

    In the foreground until interrupted, or with ``--background`` detached
    until ``python -m fediversity_providers.testing stop garage``, printing
    ``export`` lines (FVP_GARAGE_ADMIN, FVP_GARAGE_TOKEN_FILE, FVP_GARAGE_S3)
    for ``eval``.
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m fediversity_providers.providers.garage_bucket.testing",
                                     description=main.__doc__)
    parser.add_argument("--garage-version", type=int, choices=(1, 2), default=2,
                        help="which admin API to serve: 1 (Garage 1.x) or 2 (Garage 2.x; default)")
    parser.add_argument("--admin-port", type=int, default=0, help="admin API port on 127.0.0.1 (default: any free)")
    parser.add_argument("--s3-port", type=int, default=0, help="S3 port on 127.0.0.1 (default: any free)")
    parser.add_argument("--token-file", help="where to write the admin token (default with --background: "
                                             "a file beside the keeper's log)")
    parser.add_argument("--background", action="store_true",
                        help="detach, print export lines for eval, keep serving until stopped")
    args = parser.parse_args(argv)
    if args.background:
        from fediversity_providers.testing import background

        token_file = Path(args.token_file or background.state_dir() / "garage-admin-token")

        def start():
            s3 = MotoS3()
            emu = GarageEmulator(args.garage_version, s3=s3, port=args.admin_port, s3_port=args.s3_port)
            token_file.write_text(emu.token + "\n")
            token_file.chmod(0o600)

            def close():
                emu.close()
                s3.stop()
            return {"FVP_GARAGE_ADMIN": emu.endpoint, "FVP_GARAGE_TOKEN_FILE": str(token_file),
                    "FVP_GARAGE_S3": emu.s3_endpoint}, close
        try:
            found = background.keep("garage", start)
        except RuntimeError as error:
            raise SystemExit(f"{parser.prog}: {error}") from None
        sys.stdout.write(background.exports(found))
        return
    if not args.token_file:
        parser.error("--token-file is required in the foreground")
    s3 = MotoS3()
    emu = GarageEmulator(args.garage_version, s3=s3, port=args.admin_port, s3_port=args.s3_port)
    Path(args.token_file).write_text(emu.token + "\n")
    print(f"admin API {emu.endpoint}  S3 {emu.s3_endpoint}  token in {args.token_file}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.close()
        s3.stop()
        for line in emu.violations:
            print("outside the documents:", line, flush=True)


if __name__ == "__main__":
    main()
