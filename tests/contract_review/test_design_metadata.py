"""The design's insert, taken literally, leaves the empty entry beside the ``loading``
one ("add new drive spec ... with state="loading"" while "this element is still present").
Such metadata must read as an insert in flight, in either order."""

from __future__ import annotations

import pytest
from ovirt_cdrom.domain.errors import InvalidMetadata
from ovirt_cdrom.domain.model import CdEntry, CdromSlot, EntryState, VolumeRef

A = VolumeRef("13345997-b94f-42dd-b8ef-a1392f65cebf", "88252cf6-381e-48f0-8795-a294a32c7149",
              "89f05c7d-b961-4935-993f-514499024515", "626a493f-5214-4337-b580-96a1ce702c2a")
B = VolumeRef("13345997-b94f-42dd-b8ef-a1392f65cebf", "88252cf6-381e-48f0-8795-a294a32c7149",
              "0b7c2f0e-3f7a-4b1e-8d8e-4a0a9c6f1d2e", "5d2e9a41-7c3b-4f6a-9e1d-2b8c7a6f5e4d")
EMPTY = CdEntry(None, None)
LOADING_A = CdEntry(EntryState.LOADING, A)


@pytest.mark.parametrize("entries", [(EMPTY, LOADING_A), (LOADING_A, EMPTY)],
                         ids=["empty-first", "loading-first"])
def test_empty_entry_beside_loading_is_an_insert_in_flight(
        entries: tuple[CdEntry, ...]) -> None:
    assert CdromSlot.from_entries(entries) == CdromSlot(loading=A)


def test_a_settled_cd_beside_loading_is_still_refused() -> None:
    with pytest.raises(InvalidMetadata):
        CdromSlot.from_entries((CdEntry(None, B), LOADING_A))
