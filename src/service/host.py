"""The host as the flows use it: the three ports, and what only this process knows.

The flows call the ports directly, except where the bookkeeping must go with the call:
metadata writes (one writer of a VM's block at a time: a write replaces the whole block),
and a volume's prepare and release (one activation of a volume at a time, the host-wide
volume users, ``VolumeUsers``). Here too: one lock per drive (a second operation on a drive
waits), and which drives an operation is running on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ovirt_cdrom.domain.errors import NoSuchDrive, NoSuchVM
from ovirt_cdrom.domain.model import DriveKey, Media, Tray, VmId, VolumeRef
from ovirt_cdrom.domain.state import DriveState
from ovirt_cdrom.domain.users import VolumeUsers
from ovirt_cdrom.ports import Hypervisor, MetadataRepository, VolumeActivator

log = logging.getLogger(__name__)
T = TypeVar("T")


class Host:
    def __init__(self, hypervisor: Hypervisor, volumes: VolumeActivator,
                 metadata: MetadataRepository) -> None:
        self.hypervisor = hypervisor
        self.volumes = volumes
        self.metadata = metadata
        self._lock = threading.Lock()  # the bookkeeping's; never held across a port call
        self._drive_locks: dict[DriveKey, threading.Lock] = {}
        self._metadata_locks: dict[VmId, threading.Lock] = {}
        self._volume_locks: dict[VolumeRef, threading.Lock] = {}
        self.users = VolumeUsers()
        # `_busy`: the drives an operation runs on; `_last[key]`: the `_ops` counter when one
        # last began or ended there. A look at a drive taken without its lock after the
        # counter read `seen` still holds while the drive is idle and `_last[key] <= seen`.
        self._ops = 0
        self._last: dict[DriveKey, int] = {}
        self._busy: set[DriveKey] = set()

    # --- the drive's operation ---------------------------------------------------------

    @contextmanager
    def operation(self, key: DriveKey) -> Iterator[int]:
        """Hold the drive for one operation: a second one on the drive waits. Yields the
        counter's value when the drive's previous operation ended (0: none yet)."""
        with self._lock_of(self._drive_locks, key):
            previous = self._mark(key, busy=True)
            try:
                yield previous
            finally:
                self._mark(key, busy=False)

    @contextmanager
    def bookkeeping(self) -> Iterator[None]:
        """Hold the bookkeeping still (to look at ``users``)."""
        with self._lock:
            yield

    def counter(self) -> int:
        with self._lock:
            return self._ops

    def _mark(self, key: DriveKey, busy: bool) -> int:
        with self._lock:
            previous = self._last.get(key, 0)
            self._ops += 1
            self._last[key] = self._ops
            if busy:
                self._busy.add(key)
            else:
                self._busy.discard(key)
            return previous

    # --- the metadata -------------------------------------------------------------------

    def write(self, key: DriveKey, state: DriveState) -> None:
        """Write the drive's state; one writer of the VM's block at a time."""
        with self._lock_of(self._metadata_locks, key.vm):
            self.metadata.write(key.vm, key.drive, state)

    # --- the volumes --------------------------------------------------------------------

    def note_holder(self, key: DriveKey, state: DriveState, tray: Tray) -> None:
        """Record, from scratch, which of the state's volumes this drive holds."""
        with self._lock:
            self.users.forget(key)
            self._claim_held(key, state, tray)

    def claim_if_unchanged(self, key: DriveKey, state: DriveState, tray: Tray,
                           seen: int) -> None:
        """Record what a look at the drive taken after the counter read ``seen`` found,
        unless an operation touched the drive since (its own records are then exact)."""
        with self._lock:
            if key not in self._busy and self._last.get(key, 0) <= seen:
                self._claim_held(key, state, tray)

    def forget_vms_but(self, running: set[VmId], seen: int) -> None:
        """Drop the records of drives of VMs not ``running`` that nothing touched since
        the counter read ``seen`` (a VM started meanwhile keeps its records)."""
        with self._lock:
            for key in self.users.holders():
                if key.vm not in running and key not in self._busy \
                        and self._last.get(key, 0) <= seen:
                    self.users.forget(key)

    def _claim_held(self, key: DriveKey, state: DriveState, tray: Tray) -> None:
        for volume in state.volumes:
            if volume.in_tray(tray):
                self.users.claim(volume, key)

    def prepare(self, key: DriveKey, volume: VolumeRef) -> Media:
        """Activate ``volume`` for the drive (which becomes one of its users)."""
        with self._lock_of(self._volume_locks, volume):
            with self._lock:
                self.users.claim(volume, key)
            return self.volumes.prepare(volume)

    def release(self, key: DriveKey, volume: VolumeRef) -> frozenset[DriveKey]:
        """The drive lets go of ``volume``: tear it down unless other drives still use it.

        Answers the drives that still use it (none: it was torn down). Raises the
        activator's error when the teardown fails.
        """
        with self._lock_of(self._volume_locks, volume):
            with self._lock:
                others = self.users.release(volume, key)
            others = self._still_using(volume, others)
            if not others:
                self.volumes.teardown(volume)
            return others

    def _still_using(self, volume: VolumeRef,
                     users: frozenset[DriveKey]) -> frozenset[DriveKey]:
        """The recorded users of ``volume`` that still use it.

        A drive with an operation running keeps its record (it may be loading the volume).
        An idle one is looked at: a VM gone, or a tray that no longer holds the volume, is no
        user any more, and its record goes (D25). Called with the volume's lock held, so no
        prepare of the volume runs meanwhile.
        """
        still = set()
        for user in sorted(users, key=str):
            with self._lock:
                busy = user in self._busy
            if not busy:
                try:
                    busy = volume.in_tray(self.hypervisor.cdrom(user.vm, user.drive))
                except (NoSuchVM, NoSuchDrive):
                    busy = False
                except Exception as err:
                    log.warning("Cannot tell whether %s still holds %s (%s): keeping it",
                                user, volume, err)
                    busy = True
            if busy:
                still.add(user)
                continue
            log.info("%s no longer holds %s: dropping its record", user, volume)
            with self._lock:
                if user in self._busy:
                    still.add(user)
                else:
                    self.users.release(volume, user)
        return frozenset(still)

    # --- locks --------------------------------------------------------------------------

    def _lock_of(self, locks: dict[Any, threading.Lock], name: object) -> threading.Lock:
        """The lock of ``name`` in ``locks`` (to hold with ``with``), created on first use."""
        lock = locks.get(name)
        if lock is None:
            with self._lock:
                lock = locks.setdefault(name, threading.Lock())
        return lock
