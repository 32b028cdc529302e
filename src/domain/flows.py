"""The operation policies: insert, eject and change, with every failure branch of the design.

A flow is a generator. It *yields* commands (write the metadata, prepare a volume, load
the media...) and receives each command's result, or has the command's error thrown in at
the ``yield``. It performs no I/O itself: the service executes the commands through the
ports. So each flow below reads like the design's flow list, ``except`` branches included,
and can be driven in a test by feeding it results.

Where the design's literal steps would break the product's promises, the promise wins; each
such place is marked ``DECISION`` and recorded in ``docs/decisions.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from ovirt_cdrom.domain.errors import (
    CannotPrepareImage,
    CdromError,
    ChangeDiskFailed,
    GeneralException,
    NoSuchVM,
    VolumeInUse,
    VolumeNotFound,
)
from ovirt_cdrom.domain.model import (
    CdromSlot,
    CdTarget,
    Eject,
    LoadPath,
    LoadVolume,
    Media,
    Unreadable,
    VolumeRef,
)
from ovirt_cdrom.domain.recovery import Decision, Observation, decide

log = logging.getLogger(__name__)

# --- Commands a flow yields ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteSlot:
    """Write the drive's CD-ROM metadata entries so that they describe ``slot``."""

    slot: CdromSlot


@dataclass(frozen=True, slots=True)
class Prepare:
    """Activate ``volume``; the result is the :class:`Media` to load."""

    volume: VolumeRef


@dataclass(frozen=True, slots=True)
class ResolvePath:
    """Check a legacy ISO path exists; the result is its :class:`Media`."""

    path: str


@dataclass(frozen=True, slots=True)
class LoadMedia:
    media: Media


@dataclass(frozen=True, slots=True)
class EjectMedia:
    pass


@dataclass(frozen=True, slots=True)
class ReadTray:
    """Read what the drive holds now; the result is a path or None."""


@dataclass(frozen=True, slots=True)
class Teardown:
    """Deactivate ``volume``; raises VolumeInUse when another drive still uses it."""

    volume: VolumeRef


@dataclass(frozen=True, slots=True)
class IsActive:
    volume: VolumeRef


Command = (WriteSlot | Prepare | ResolvePath | LoadMedia | EjectMedia | ReadTray | Teardown
           | IsActive)

Flow = Generator[Command, Any, "FlowResult"]


@dataclass(frozen=True, slots=True)
class FlowResult:
    """How a flow that returned (rather than raised) ended."""

    slot: CdromSlot | Unreadable
    changed: bool = True
    clean: bool = True  # False: a marker stays for recovery (e.g. a teardown failed)
    # Recovery only: the table row it acted on (reported, not part of the outcome).
    decision: Decision | None = field(default=None, compare=False)


_READ_BACK_ATTEMPTS = 2


# --- The flows -----------------------------------------------------------------------------


def change_cd(slot: CdromSlot, held: str | None, target: CdTarget) -> Flow:
    """Insert, eject or change the CD of one drive whose metadata describes ``slot``.

    ``slot`` is settled and names what the tray holds (``held``): the service recovers
    leftovers first. The flow is the design's three lists merged, since insert is a change
    from nothing and eject a change to nothing:

    1. mark the metadata (``loading`` for the new CD, ``ejecting`` for the old one);
    2. prepare the new volume;
    3. switch the tray (load, or eject);
    4. tear down the old volume — *before* the metadata stops naming it;
    5. write the final metadata.

    Before step 3 completes any failure restores the old state and fails the call; after
    it, nothing fails the call: the CD in the tray is the truth, and what could not be
    cleaned up keeps a marker for recovery.
    """
    if is_noop(slot, held, target):
        return FlowResult(slot, changed=False)

    new_volume = target.volume if isinstance(target, LoadVolume) else None
    old_volume = slot.current

    if new_volume is not None:
        pending: CdromSlot | None = slot.begin_load(new_volume)
    elif old_volume is not None:
        pending = slot.begin_eject()
    else:
        # The legacy route with no volume involved: nothing to mark (as vdsm did).
        pending = None

    media: Media | None = None
    if isinstance(target, LoadPath):
        # Checked before anything is written: a missing file changes nothing.
        media = yield ResolvePath(target.path)

    # 1. Mark the metadata.
    if pending is not None:
        yield from _mark(slot, pending)

    # 2. Prepare the new volume.
    if new_volume is not None:
        assert pending is not None
        try:
            media = yield Prepare(new_volume)
        except CdromError as err:
            # DECISION: a failed prepare may still have activated the volume, so it is torn
            # down too; if that teardown fails the marker stays for recovery.
            yield from _abandon(slot, pending, new_volume)
            raise CannotPrepareImage(f"volume {new_volume}: {err}") from err

    # 3. Switch the tray.
    expected = media.path if media is not None else None
    try:
        if media is not None:
            yield LoadMedia(media)
        else:
            yield EjectMedia()
    except CdromError as err:
        # DECISION: the call may have taken effect (a timeout): read the drive back.
        now = yield from _read_back()
        if now is _UNKNOWN:
            log.error("Media change failed (%s) and the drive cannot be read back; "
                      "metadata keeps its markers for recovery", err)
            raise ChangeDiskFailed(f"{err}; outcome unknown, recovery will reconcile") from err
        if now != expected:
            if new_volume is not None and pending is not None:
                yield from _abandon(slot, pending, new_volume)
            elif pending is not None:
                yield from _write_quietly(slot)
            raise ChangeDiskFailed(str(err)) from err
        log.warning("Media change reported %s but took effect; continuing", err)

    # From here on the tray holds the new CD: the call succeeds whatever happens next.
    if pending is None:
        return FlowResult(slot)

    # 4. Tear down the old volume before the metadata stops naming it.
    old_gone = True
    if old_volume is not None:
        old_gone = yield from _teardown_quietly(old_volume)

    # 5. Write the final metadata (or keep the marker if the old volume is still active).
    final = pending.apply(old_torn_down=old_gone)
    if final == pending:
        return FlowResult(pending, clean=False)
    written = yield from _write_quietly(final)
    return FlowResult(final, clean=written and old_gone)


def is_noop(slot: CdromSlot, held: str | None, target: CdTarget) -> bool:
    """Whether the drive already holds ``target`` and the metadata says so."""
    if not slot.settled:
        return False
    if isinstance(target, LoadVolume):
        return slot.current == target.volume and target.volume.is_at(held)
    if isinstance(target, LoadPath):
        return slot.current is None and held == target.path
    assert isinstance(target, Eject)
    return slot.current is None and held is None


def consistent(slot: CdromSlot | Unreadable, held: str | None) -> bool:
    """Whether a settled slot names exactly what the tray holds."""
    if isinstance(slot, Unreadable) or not slot.settled:
        return False
    if slot.current is None:
        # An empty entry: the tray is empty or holds a legacy path we do not manage.
        return True
    return slot.current.is_at(held)


# --- Steps shared by the flows -------------------------------------------------------------


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown>"


_UNKNOWN: Any = _Unknown()


def _mark(before: CdromSlot, pending: CdromSlot) -> Generator[Command, Any, None]:
    """Write the pending markers; on failure put the old entries back and fail."""
    try:
        yield WriteSlot(pending)
    except CdromError as err:
        # The write may have taken effect (a timeout): restore what was there.
        yield from _write_quietly(before)
        raise GeneralException(f"cannot mark the CD-ROM change in VM metadata: {err}") from err


def _abandon(before: CdromSlot, pending: CdromSlot,
             new_volume: VolumeRef) -> Generator[Command, Any, None]:
    """Undo a change that did not reach the tray: tear the new volume down, unmark.

    DECISION: if the new volume cannot be torn down, its ``loading`` marker stays so that
    recovery finds and tears it down; dropping it (as the design says) would leak it.
    """
    if (yield from _teardown_quietly(new_volume)):
        yield from _write_quietly(before)
    else:
        log.warning("Keeping the loading marker for %s so that recovery tears it down",
                    new_volume)


def _teardown_quietly(volume: VolumeRef) -> Generator[Command, Any, bool]:
    """Tear ``volume`` down; True when it is no longer ours to worry about."""
    try:
        yield Teardown(volume)
    except VolumeInUse as err:
        log.info("Not tearing down %s: %s", volume, err)
        return True
    except VolumeNotFound as err:
        # Storage does not have it, so it cannot be active: nothing is left to record.
        log.info("Nothing to tear down for %s: %s", volume, err)
        return True
    except CdromError:
        log.exception("Cannot tear down volume %s", volume)
        return False
    return True


def _write_quietly(slot: CdromSlot) -> Generator[Command, Any, bool]:
    try:
        yield WriteSlot(slot)
    except NoSuchVM:
        raise  # the VM went away: nothing is left to record anything for
    except CdromError:
        log.exception("Cannot write CD-ROM metadata %s; recovery will reconcile", slot)
        return False
    return True


def _read_back() -> Generator[Command, Any, Any]:
    for attempt in range(1, _READ_BACK_ATTEMPTS + 1):
        try:
            held = yield ReadTray()
        except NoSuchVM:
            raise
        except CdromError:
            log.exception("Cannot read the drive back (attempt %d)", attempt)
            continue
        return held
    return _UNKNOWN


def recover_drive(slot: CdromSlot | Unreadable, held: str | None) -> Flow:
    """Clean up one drive's leftovers: observe, decide (a pure table lookup), act.

    Returns a result that is ``clean`` when the metadata now names exactly what the tray
    holds with no marker. When a teardown fails the metadata is left as it was, so that it
    still names the active volume and the next recovery retries.
    """
    if consistent(slot, held):
        return FlowResult(slot, changed=False)
    active = []
    for volume in slot.volumes:
        if (yield IsActive(volume)):
            active.append(volume)
    decision = decide(Observation.of(slot, held, active))
    log.info("Recovering CD-ROM (%s, tray %s): case %s: %s",
             slot, held or "empty", decision.case, decision.design)
    all_gone = True
    for volume in decision.teardown:
        all_gone = (yield from _teardown_quietly(volume)) and all_gone
    if not all_gone:
        return FlowResult(slot, changed=False, clean=False, decision=decision)
    if decision.final == slot:
        return FlowResult(slot, changed=False, decision=decision)
    written = yield from _write_quietly(decision.final)
    return FlowResult(decision.final if written else slot, clean=written, decision=decision)
