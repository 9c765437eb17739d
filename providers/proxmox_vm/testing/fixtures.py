"""Pytest fixtures to test ``proxmox_vm`` against Proxmox VE (pytest plugin, entry point ``pytest11``).

``pve_emulator`` (a running :class:`~.emulator.PveEmulator`), ``pve_cluster``
(a :class:`PveTarget`: the emulator, or a real cluster when ``PVE_URL``,
``PVE_TOKEN_ID`` and ``PVE_TOKEN_SECRET_FILE`` are set, with ``PVE_TEMPLATE``
and optionally ``PVE_NODE``, ``PVE_CA_FILE``, ``PVE_VERIFY_TLS=0``).  Both
fail the test if the client sent a request Proxmox VE's API schema refuses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from fediversity_providers.testing import require

from .emulator import APIDOC_ENV, PveEmulator, apidoc_path

__all__ = ["PveTarget", "pve_emulator", "pve_cluster"]


class PveTarget:
    """A cluster to test against: the emulator, or a real one named by environment variables."""

    def __init__(self, api: dict[str, Any], node: str, template: str, emulator: PveEmulator | None) -> None:
        self.api, self.node, self.template, self.emulator = api, node, template, emulator

    @property
    def real(self) -> bool:
        return self.emulator is None

    def our_vms(self, names: set[str] | None = None) -> dict[int, str]:
        """vmid -> name of the VMs tests made (all on the emulator; on a real cluster those named ``names``)."""
        if self.emulator is not None:
            return self.emulator.our_vms()
        from fediversity_providers.providers.proxmox_vm.client import PveClient

        secret = Path(self.api["tokenSecretFile"]).read_text().strip()
        client = PveClient(self.api["url"], self.api["tokenId"], secret, verify_tls=self.api.get("verifyTls", True),
                           ca_file=self.api.get("caFile"))
        return {int(vm["vmid"]): vm.get("name", "") for vm in client.get("/cluster/resources", type="vm") or []
                if not vm.get("template") and (names is None or vm.get("name") in names)}


def _emulator_or_fail() -> PveEmulator:
    path = apidoc_path()
    require(path is not None and path.is_file(),
            f"Proxmox VE's API schema (pve-apidoc.json) not found beside the checkout; set {APIDOC_ENV}")
    return PveEmulator(schema_path=path)


@pytest.fixture
def pve_emulator():
    """A running :class:`PveEmulator`; the test fails if the client sent a request the schema refuses."""
    emulator = _emulator_or_fail().start()
    try:
        yield emulator
    finally:
        emulator.stop()
    assert not emulator.violations, "requests Proxmox VE's API schema refuses:\n" + "\n".join(emulator.violations)


@pytest.fixture
def pve_cluster(tmp_path):
    """A :class:`PveTarget`: a real cluster with ``PVE_URL`` & co. set, else the emulator."""
    if os.environ.get("PVE_URL"):
        api = {"url": os.environ["PVE_URL"], "tokenId": os.environ["PVE_TOKEN_ID"],
               "tokenSecretFile": os.environ["PVE_TOKEN_SECRET_FILE"],
               "verifyTls": os.environ.get("PVE_VERIFY_TLS", "1") not in ("0", "false", "no"),
               "caFile": os.environ.get("PVE_CA_FILE")}
        yield PveTarget(api, os.environ.get("PVE_NODE", "pve"), os.environ.get("PVE_TEMPLATE", "9000"), None)
        return
    emulator = _emulator_or_fail().start()
    secret_file = tmp_path / "pve-token-secret"
    secret_file.write_text(emulator.secret + "\n")
    try:
        yield PveTarget({"url": emulator.url, "tokenId": emulator.token_id, "tokenSecretFile": str(secret_file)},
                        "pve", "debian-12-cloud", emulator)
    finally:
        emulator.stop()
    assert not emulator.violations, "requests Proxmox VE's API schema refuses:\n" + "\n".join(emulator.violations)
