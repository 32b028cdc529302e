"""The design's three flows (docs/design.md), step by step, with the design's numbers.

Step 1 of each is "the engine sends changeCD": it arrives as the function's call. Each
failure branch is the ``except`` around the call it guards. Where the design's literal steps
would break the product's promises the promise wins: such places say ``DECISION`` and the
decision's number in docs/decisions.md.

A failure is the ``except`` around the port call it guards; an adapter's untyped error
counts as a typed one (``typed``), so that the compensation always runs. Two rules hold in
every flow. Before the tray switches, a failure restores the old state and
fails the call; after it, nothing fails the call: the CD in the tray is the truth, and what
could not be cleaned up keeps its marker for recovery. And a volume is torn down before the
metadata stops naming it (D2), so a crash anywhere leaves metadata naming every volume that
may be active.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ovirt_cdrom.domain.errors import (
    CannotPrepareImage,
    CdromError,
    ChangeDiskFailed,
    GeneralException,
    NoSuchVM,
    VolumeInUse,
    VolumeNotFound,
    typed,
)
from ovirt_cdrom.domain.model import (
    EMPTY_TRAY,
    DriveKey,
    FileTray,
    Tray,
    VolumeRef,
)
from ovirt_cdrom.domain.state import (
    EMPTY,
    Changing,
    DriveState,
    Ejecting,
    Inserting,
    Loaded,
)
from ovirt_cdrom.service.host import Host

log = logging.getLogger(__name__)

READ_BACK_ATTEMPTS = 2


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a flow that returned (rather than raised) left the drive."""

    state: DriveState
    changed: bool = True
    clean: bool = True  # False: a marker stays for recovery (e.g. a teardown failed)
    recovered: bool = False  # leftovers of an interrupted operation were recovered first


# --- VM with empty tray, insert CD ------------------------------------------------------------


def insert(host: Host, key: DriveKey, new: VolumeRef) -> Outcome:
    # 2. Add the new drive spec with state="loading".
    _mark(host, key, EMPTY, Inserting(new))
    # 3. Prepare the new drive spec.
    try:
        media = host.prepare(key, new)
    except Exception as failure:
        err = typed(failure)
        # DECISION D5: a failed prepare may still have activated the volume: tear it down.
        _abandon(host, key, EMPTY, new)
        raise CannotPrepareImage(f"volume {new}: {err}") from err
    # 4. Load the CD into the VM.
    with _released_if_vm_goes(host, key, new):
        try:
            host.hypervisor.load(key.vm, key.drive, media)
        except Exception as failure:
            err = typed(failure)
            if not _took_effect(host, key, err, new.in_tray):
                _abandon(host, key, EMPTY, new)
                raise ChangeDiskFailed(str(err)) from err
        # 5. Remove the state attribute; if that fails, log and succeed.
        return _settle(host, key, Loaded(new))


# --- VM with loaded CD, eject CD ------------------------------------------------------------


def eject(host: Host, key: DriveKey, old: VolumeRef) -> Outcome:
    # 2. Mark the CD ejecting.
    _mark(host, key, Loaded(old), Ejecting(old))
    # 3. Eject the CD from the VM.
    try:
        host.hypervisor.eject(key.vm, key.drive)
    except Exception as failure:
        err = typed(failure)
        if not _took_effect(host, key, err, lambda tray: tray == EMPTY_TRAY):
            write_quietly(host, key, Loaded(old))  # remove the state attribute
            raise ChangeDiskFailed(str(err)) from err
    # 4. Tear down the drive spec. DECISION D3: the tray is empty now, so no failure fails
    # the call; the marker stays for recovery if the volume is still active.
    if not teardown_quietly(host, key, old):
        return Outcome(Ejecting(old), clean=False)
    # 5. Remove the drive spec from the metadata; if that fails, log and succeed.
    return _settle(host, key, EMPTY)


# --- VM with loaded CD, changeCD ------------------------------------------------------------


def change(host: Host, key: DriveKey, old: VolumeRef, new: VolumeRef) -> Outcome:
    # 2.-3. Mark the loaded CD ejecting and add the new one loading: one write (D2).
    _mark(host, key, Loaded(old), Changing(old, new))
    # 4. Prepare the new drive spec.
    try:
        media = host.prepare(key, new)
    except Exception as failure:
        err = typed(failure)
        _abandon(host, key, Loaded(old), new)  # DECISION D5
        raise CannotPrepareImage(f"volume {new}: {err}") from err
    # 5. Load the new CD into the VM.
    with _released_if_vm_goes(host, key, new):
        try:
            host.hypervisor.load(key.vm, key.drive, media)
        except Exception as failure:
            err = typed(failure)
            if not _took_effect(host, key, err, new.in_tray):
                _abandon(host, key, Loaded(old), new)
                raise ChangeDiskFailed(str(err)) from err
        # 6. (Removing state="loading" waits for step 8: one final write, D2.)
        # 7. Tear down the old drive spec; if that fails, log and continue. DECISION D3: the
        # markers then stay, so that recovery (row change.4) tears the old volume down.
        if not teardown_quietly(host, key, old):
            return Outcome(Changing(old, new), clean=False)
        # 8. Remove the old CD's drive spec (and the loading state); if that fails, succeed.
        return _settle(host, key, Loaded(new))


# --- The legacy route: an ISO given by path ("fall back to old behaviour") ---------------------


def load_path(host: Host, key: DriveKey, now: Loaded | None, path: str) -> Outcome:
    """Load a file by path. No metadata states when no volume is involved, as vdsm did;
    DECISION D8: a volume the path replaces is marked and torn down as in an eject."""
    media = host.volumes.resolve_path(path)  # checked before anything is written
    if now is not None:
        _mark(host, key, now, Ejecting(now.volume))
    try:
        host.hypervisor.load(key.vm, key.drive, media)
    except Exception as failure:
        err = typed(failure)
        if not _took_effect(host, key, err, lambda tray: tray == FileTray(path)):
            if now is not None:
                write_quietly(host, key, now)
            raise ChangeDiskFailed(str(err)) from err
    if now is None:
        return Outcome(EMPTY)
    if not teardown_quietly(host, key, now.volume):
        return Outcome(Ejecting(now.volume), clean=False)
    return _settle(host, key, EMPTY)


def eject_file(host: Host, key: DriveKey) -> Outcome:
    """Empty a tray that holds a file no metadata names (the legacy route's eject)."""
    try:
        host.hypervisor.eject(key.vm, key.drive)
    except Exception as failure:
        err = typed(failure)
        if not _took_effect(host, key, err, lambda tray: tray == EMPTY_TRAY):
            raise ChangeDiskFailed(str(err)) from err
    return Outcome(EMPTY)


# --- Steps the flows share ------------------------------------------------------------------


def _mark(host: Host, key: DriveKey, before: DriveState, pending: DriveState) -> None:
    """Write the pending markers; on failure put the old state back and fail (D7)."""
    try:
        host.write(key, pending)
    except Exception as failure:
        err = typed(failure)
        if isinstance(err, NoSuchVM):
            raise err from failure
        write_quietly(host, key, before)  # the write may have taken effect (a timeout)
        raise GeneralException(f"cannot mark the CD-ROM change in VM metadata: {err}") from err


@contextmanager
def _released_if_vm_goes(host: Host, key: DriveKey, new: VolumeRef) -> Iterator[None]:
    """The VM went away (shut down, destroyed) with the new volume prepared for it:
    nothing holds the volume now, and no metadata is left to name it. Let go of it."""
    try:
        yield
    except NoSuchVM:
        log.info("VM %s went away during the change: letting go of %s", key.vm, new)
        teardown_quietly(host, key, new)
        raise


def _abandon(host: Host, key: DriveKey, before: DriveState, new: VolumeRef) -> None:
    """Undo a change that did not reach the tray: tear the new volume down, unmark.

    DECISION D6: if the new volume cannot be torn down its ``loading`` marker stays, so that
    recovery (row insert.2 / change.3) tears it down; dropping it would leak it.
    """
    if teardown_quietly(host, key, new):
        write_quietly(host, key, before)
    else:
        log.warning("Keeping the loading marker for %s so that recovery tears it down", new)


def _took_effect(host: Host, key: DriveKey, err: CdromError,
                 reached: Callable[[Tray], bool]) -> bool:
    """A media change failed: did it take effect anyway (a timeout)? DECISION D1: read the
    drive back. When it cannot be read back, the markers stay as they are and the call
    fails: recovery reconciles from what the VM holds."""
    for attempt in range(1, READ_BACK_ATTEMPTS + 1):
        try:
            tray = host.hypervisor.cdrom(key.vm, key.drive)
        except Exception as failure:
            if isinstance(typed(failure), NoSuchVM):
                raise
            log.exception("Cannot read the drive back (attempt %d)", attempt)
            continue
        if reached(tray):
            log.warning("Media change reported %s but took effect; continuing", err)
            return True
        return False
    log.error("Media change failed (%s) and the drive cannot be read back; metadata keeps "
              "its markers for recovery", err)
    raise ChangeDiskFailed(f"{err}; outcome unknown, recovery will reconcile") from err


def teardown_quietly(host: Host, key: DriveKey, volume: VolumeRef) -> bool:
    """Let go of ``volume``; True when it is no longer ours to worry about."""
    try:
        others = host.release(key, volume)
    except VolumeInUse as err:
        # DECISION D4: LVM refuses to deactivate an LV another VM holds open.
        log.info("Not tearing down %s: %s", volume, err)
        return True
    except VolumeNotFound as err:
        # DECISION D18: storage that does not have it cannot hold it active.
        log.info("Nothing to tear down for %s: %s", volume, err)
        return True
    except Exception:  # an adapter's untyped error too: the marker stays for recovery
        log.exception("Cannot tear down volume %s", volume)
        return False
    if others:
        log.info("Not tearing down %s: used by %s", volume, ", ".join(map(str, others)))
    return True


def _settle(host: Host, key: DriveKey, final: DriveState) -> Outcome:
    """The last write of a flow whose tray switched: its failure fails nothing."""
    return Outcome(final, clean=write_quietly(host, key, final))


def write_quietly(host: Host, key: DriveKey, state: DriveState) -> bool:
    try:
        host.write(key, state)
    except NoSuchVM:
        raise  # the VM went away: nothing is left to record anything for
    except Exception:  # an adapter's untyped error too
        log.exception("Cannot write CD-ROM metadata %s; recovery will reconcile", state)
        return False
    return True

