"""The abstract ports the core talks to: Hypervisor, VolumeActivator, MetadataRepository."""

from ovirt_cdrom.ports.hypervisor import Hypervisor
from ovirt_cdrom.ports.metadata import MetadataRepository
from ovirt_cdrom.ports.volumes import VolumeActivator

__all__ = ["Hypervisor", "MetadataRepository", "VolumeActivator"]
