"""ovirt-cdrom: atomic, crash-safe CD-ROM changes for ISOs on oVirt block storage."""

__version__ = "0.1.0"
