"""Adapters over libvirt (libvirt-python): the Hypervisor and the MetadataRepository."""

from ovirt_cdrom.adapters.libvirt.connection import DEFAULT_URI, LibvirtConnection
from ovirt_cdrom.adapters.libvirt.hypervisor import LibvirtHypervisor
from ovirt_cdrom.adapters.libvirt.metadata import LibvirtMetadataRepository

__all__ = ["DEFAULT_URI", "LibvirtConnection", "LibvirtHypervisor", "LibvirtMetadataRepository"]
