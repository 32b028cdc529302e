"""Who uses each volume on this host: the reference counting bug 1725915 asked for.

A user is a drive that holds the volume or is loading it. A volume is torn down only when
its last user lets go: whether another drive still uses it is decided here. Not
thread-safe by itself: the service guards it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ovirt_cdrom.domain.model import DriveKey, VolumeRef


@dataclass(slots=True)
class VolumeUsers:
    _users: dict[VolumeRef, set[DriveKey]] = field(default_factory=dict)
    # The same relation by user, so that forgetting a drive does not scan every volume.
    _by_user: dict[DriveKey, set[VolumeRef]] = field(default_factory=dict)

    def claim(self, volume: VolumeRef, user: DriveKey) -> None:
        self._users.setdefault(volume, set()).add(user)
        self._by_user.setdefault(user, set()).add(volume)

    def release(self, volume: VolumeRef, user: DriveKey) -> frozenset[DriveKey]:
        """Drop ``user``; answer the drives that still use the volume (none: tear it down)."""
        held = self._by_user.get(user)
        if held is not None:
            held.discard(volume)
            if not held:
                del self._by_user[user]
        users = self._users.get(volume)
        if users is None:
            return frozenset()
        users.discard(user)
        if not users:
            del self._users[volume]
        return frozenset(users)

    def forget(self, user: DriveKey) -> None:
        """The drive uses nothing (any more)."""
        for volume in list(self._by_user.get(user, ())):
            self.release(volume, user)

    def users(self, volume: VolumeRef) -> frozenset[DriveKey]:
        return frozenset(self._users.get(volume, ()))

    def holders(self) -> list[DriveKey]:
        """Every drive recorded as using some volume."""
        return list(self._by_user)

    def snapshot(self) -> dict[VolumeRef, frozenset[DriveKey]]:
        return {v: frozenset(u) for v, u in self._users.items()}
