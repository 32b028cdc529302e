"""The design's insert, taken literally, leaves the empty entry beside the ``loading``
one ("add new drive spec ... with state="loading"" while "this element is still present").
Such metadata must read as an insert in flight, in either order, in the design's entries
and in the XML."""

from __future__ import annotations

import pytest
from ovirt_cdrom.adapters.metadata_xml import (
    LOADING,
    NS,
    Entry,
    from_entries,
    parse_block,
    read,
)
from ovirt_cdrom.domain.errors import InvalidMetadata
from ovirt_cdrom.domain.model import DriveName
from ovirt_cdrom.domain.state import Inserting, Unreadable
from rig import volume

A, B = volume("a"), volume("b")
EMPTY_ENTRY: Entry = (None, None)
LOADING_A: Entry = (LOADING, A)


@pytest.mark.parametrize("found", [(EMPTY_ENTRY, LOADING_A), (LOADING_A, EMPTY_ENTRY)],
                         ids=["empty-first", "loading-first"])
def test_empty_entry_beside_loading_is_an_insert_in_flight(found: tuple[Entry, ...]) -> None:
    assert from_entries(found) == Inserting(A)


def test_the_literal_insert_reads_as_an_insert_in_flight_from_the_xml() -> None:
    pdiv = "".join(f"<ovirt-vm:{k}>{v}</ovirt-vm:{k}>" for k, v in A.as_dict().items())
    root = parse_block(f'<ovirt-vm:vm xmlns:ovirt-vm="{NS}">'
                       '<ovirt-vm:device devtype="disk" name="sdc"/>'
                       f'<ovirt-vm:device devtype="disk" name="sdc" state="loading">{pdiv}'
                       "</ovirt-vm:device></ovirt-vm:vm>")
    assert read(root, DriveName("sdc")) == Inserting(A)


def test_a_settled_cd_beside_loading_is_still_refused() -> None:
    with pytest.raises(InvalidMetadata):
        from_entries(((None, B), LOADING_A))
    assert not isinstance(from_entries((EMPTY_ENTRY, LOADING_A)), Unreadable)
