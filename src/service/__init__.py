"""The application service: the flows and recovery over the ports (see service.py)."""

from ovirt_cdrom.service.flows import Outcome
from ovirt_cdrom.service.recovery import DriveRecovery, RecoveryReport
from ovirt_cdrom.service.service import CdromService

__all__ = ["CdromService", "DriveRecovery", "Outcome", "RecoveryReport"]
