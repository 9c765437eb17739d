"""Garage's test environment: an admin API emulator checked against Garage's OpenAPI documents.

What a test of ``garage_bucket`` (or of any plugin that talks to Garage)
needs: :class:`GarageEmulator` (admin API v1 and v2, with fault switches) in
front of a moto S3 server (:class:`MotoS3`) behind a gate that enforces
Garage's key permissions (:mod:`.s3_gate`); :class:`Spec`, the OpenAPI
checker (:mod:`.openapi`); :class:`RealGarage` for a real binary
(``GARAGE_BIN``); :class:`InNamespace`, an emulator inside an SSH test
host's own network namespace, reached only through the SSH tunnel
(:mod:`.namespace`); and the pytest fixtures (:mod:`.fixtures`, registered
through the ``pytest11`` entry point ``fediversity_providers_garage_bucket``):
``garage``, ``garage_emulator``, ``garage_s3``.

``python -m fediversity_providers.providers.garage_bucket.testing`` serves an
emulated Garage by hand.
"""

from .emulator import Fault, GarageEmulator, MotoS3
from .fixtures import GarageTarget
from .namespace import ADMIN_PORT, InNamespace
from .openapi import Spec, SpecViolation
from .real import RealGarage
from .s3_gate import S3Gate

__all__ = ["ADMIN_PORT", "Fault", "GarageEmulator", "GarageTarget", "InNamespace", "MotoS3", "RealGarage", "S3Gate", "Spec", "SpecViolation"]
