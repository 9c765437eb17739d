"""Proxmox VE's test environment: an API emulator checked against Proxmox VE's own API schema.

:class:`PveEmulator` (:mod:`.emulator`, with its endpoints in :mod:`.routes`)
serves a stateful cluster over HTTP(S); :class:`ApiSchema` (:mod:`.apischema`)
checks every request and answer against ``pve-apidoc.json``; the pytest
fixtures (:mod:`.fixtures`, registered through the ``pytest11`` entry point
``fediversity_providers_proxmox_vm``) are ``pve_emulator`` and ``pve_cluster``.
"""

from .apischema import ApiSchema, apidoc_path
from .emulator import PveEmulator
from .fixtures import PveTarget

__all__ = ["ApiSchema", "PveEmulator", "PveTarget", "apidoc_path"]
