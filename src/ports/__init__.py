"""The abstract ports the core talks to: Hypervisor, VolumeActivator, MetadataRepository."""

from typing import NamedTuple

from ovirt_cdrom.ports.hypervisor import Hypervisor
from ovirt_cdrom.ports.metadata import MetadataRepository
from ovirt_cdrom.ports.volumes import VolumeActivator


class Ports(NamedTuple):
    """One adapter set: what the service runs over."""

    hypervisor: Hypervisor
    volumes: VolumeActivator
    metadata: MetadataRepository


__all__ = ["Hypervisor", "MetadataRepository", "Ports", "VolumeActivator"]
