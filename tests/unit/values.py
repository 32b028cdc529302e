"""Shared values for the unit tests: a few deterministic ISO volumes."""

from __future__ import annotations

import uuid

from ovirt_cdrom.domain.model import VolumeRef

POOL = "13345997-b94f-42dd-b8ef-a1392f65cebf"
DOMAIN = "88252cf6-381e-48f0-8795-a294a32c7149"


def volume(n: int) -> VolumeRef:
    """The n-th ISO volume of the test storage domain (same pool and domain, own image)."""
    image = str(uuid.uuid5(uuid.NAMESPACE_OID, f"image-{n}"))
    vol = str(uuid.uuid5(uuid.NAMESPACE_OID, f"volume-{n}"))
    return VolumeRef(POOL, DOMAIN, image, vol)


A, B, C = volume(1), volume(2), volume(3)
