"""Every error the product raises, with the vdsm name and code the engine knows.

The engine sees only ``code`` and ``message``; ``vdsm_name`` is the name of that code in
vdsm's exception module, inherited by our finer-grained subclasses. Errors raised by ports
but never shown to the engine as such (a volume in use, a hypervisor timeout) still carry a
code, so nothing can escape untyped.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CdromError(Exception):
    """Base of every typed error. ``msg`` is a template filled from keyword arguments."""

    code: ClassVar[int] = 100
    vdsm_name: ClassVar[str] = "GeneralException"
    msg: ClassVar[str] = "{reason}"

    def __init__(self, reason: str = "", **fields: Any) -> None:
        self.reason = reason
        self.fields = fields
        try:
            text = self.msg.format(reason=reason, **fields)
        except (KeyError, IndexError):
            text = reason or self.msg
        super().__init__(text)

    @property
    def message(self) -> str:
        return str(self)

    def response(self) -> dict[str, Any]:
        """vdsm's error shape: ``{"code": int, "message": str}``."""
        return {"code": self.code, "message": self.message}


# --- Errors the engine knows for VM.changeCD (vdsm's names and codes) -------------------


class NoSuchVM(CdromError):
    code = 1
    vdsm_name = "NoSuchVM"
    msg = "Virtual machine does not exist: {reason}"


class ImageFileNotFound(CdromError):
    code = 13
    vdsm_name = "ImageFileNotFound"
    msg = "Drive image file could not be found: {reason}"


class ChangeDiskFailed(CdromError):
    code = 41
    vdsm_name = "ChangeDiskFailed"
    msg = "Failed to change disk image: {reason}"


class MigrationInProgress(CdromError):
    code = 51
    vdsm_name = "MigrationInProgress"
    msg = "Command not supported during migration: {reason}"


class UnsupportedOperation(CdromError):
    code = 75
    vdsm_name = "UnsupportedOperation"
    msg = "Operation not supported: {reason}"


class GeneralException(CdromError):
    code = 100
    vdsm_name = "GeneralException"
    msg = "General Exception: {reason}"


class CannotPrepareImage(CdromError):
    code = 1630
    vdsm_name = "CannotPrepareImage"
    msg = "Cannot prepare image: {reason}"


# --- Bad input: typed, reported with vdsm's GeneralException code --------------------------


class InvalidParameter(GeneralException):
    """A request field is missing, of the wrong type, or malformed."""

    msg = "Invalid parameter {field}: {reason}"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason, field=field)
        self.field = field


class NoSuchDrive(ChangeDiskFailed):
    """The VM has no CD-ROM drive of that name (libvirt would refuse the media change)."""

    msg = "VM {vm} has no CD-ROM drive {drive}"

    def __init__(self, vm: object, drive: object) -> None:
        super().__init__(f"no CD-ROM drive {drive}", vm=vm, drive=drive)


# --- Errors raised by ports; the flows map them before the engine sees them ---------------


class HypervisorError(GeneralException):
    """The hypervisor refused or failed a call."""

    msg = "Hypervisor error: {reason}"


class HypervisorTimeout(HypervisorError):
    """The hypervisor did not answer in time; the call may still have taken effect."""

    msg = "Hypervisor call timed out: {reason}"


class StorageError(GeneralException):
    """Activating or deactivating a volume failed."""

    msg = "Storage error: {reason}"


class VolumeNotFound(StorageError):
    msg = "Volume does not exist: {reason}"


class VolumeInUse(StorageError):
    """Tearing down was refused because someone else (another VM) holds the volume."""

    msg = "Volume in use: {reason}"


class MetadataError(GeneralException):
    """Reading or writing the VM's oVirt metadata failed."""

    msg = "VM metadata error: {reason}"


class InvalidMetadata(MetadataError):
    """The VM's metadata could be read but does not make sense (hostile or corrupt)."""

    msg = "Invalid VM metadata: {reason}"


class DriveBusy(GeneralException):
    """Leftovers of an interrupted operation on this drive could not be cleaned up."""

    msg = "Drive {drive} of VM {vm} has leftovers that could not be cleaned up: {reason}"


ENGINE_ERRORS: tuple[type[CdromError], ...] = (
    NoSuchVM, ImageFileNotFound, ChangeDiskFailed, MigrationInProgress, UnsupportedOperation,
    GeneralException, CannotPrepareImage)
_NAMES = {error.code: error.vdsm_name for error in ENGINE_ERRORS}


def vdsm_name(code: int) -> str:
    """vdsm's name of an error code the engine knows (GeneralException for others)."""
    return _NAMES.get(code, GeneralException.vdsm_name)


def typed(exc: Exception) -> CdromError:
    """``exc`` as a typed error: itself, or a GeneralException wrapping it."""
    return exc if isinstance(exc, CdromError) else internal_error(exc)


def internal_error(exc: BaseException) -> GeneralException:
    """Wrap an untyped exception so that nothing reaches the engine untyped."""
    err = GeneralException(f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err
