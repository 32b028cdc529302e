"""The MetadataRepository port over libvirt's domain metadata (the ``ovirt-vm`` block).

libvirt stores the block under our namespace but hands it back with that namespace taken
off our elements (``<vm><device .../></vm>``), and on a write puts every element without
a namespace back into it. So a read qualifies every unqualified element with the
``ovirt-vm`` namespace before the shared codec (:mod:`ovirt_cdrom.adapters.metadata_xml`)
sees it, and a write takes the namespace off again; elements of any other namespace pass
through both untouched, with their own prefixes.

Reads ask for the domain's current block (``VIR_DOMAIN_AFFECT_CURRENT``: the live one of a
running domain, the configuration of a stopped one). Writes go to the live domain and, for
a persistent domain, to its configuration too, in one ``setMetadata`` call; a write reads
the block once (to keep every other element: other writers, such as vdsm, own them), and
asks whether the domain is running only for a persistent one (a transient domain is running
by definition). Whether the domain is persistent is asked once per kept domain handle
(``Handle.persistent``, which says what happens when a running domain is defined or
undefined meanwhile). "No metadata" (``VIR_ERR_NO_DOMAIN_METADATA``) is an
empty block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from typing import TypeVar

import libvirt  # type: ignore[import-untyped, unused-ignore]
from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.libvirt.connection import Domains, Handle, error_code, map_error
from ovirt_cdrom.domain.errors import InvalidMetadata, MetadataError
from ovirt_cdrom.domain.model import DriveName, VmId
from ovirt_cdrom.domain.state import DriveState
from ovirt_cdrom.ports import MetadataRepository

log = logging.getLogger(__name__)

T = TypeVar("T")
_NS = metadata_xml.NS
_Q = f"{{{_NS}}}"


def from_libvirt(text: str | None) -> etree._Element:
    """The block libvirt returned, with our elements in our namespace, checked by the codec."""
    if text is None or not text.strip():
        return metadata_xml.new_block()
    # Size, syntax, DOCTYPE, entities and depth: the codec's checks, once.
    raw = metadata_xml.parse_untrusted(text)
    if raw.tag not in ("vm", _Q + "vm"):
        raise InvalidMetadata(f"expected <{metadata_xml.PREFIX}:vm>, got <{raw.tag}>")
    root = metadata_xml.new_block()
    for name, value in raw.attrib.items():
        root.set(name, value)
    root.text = raw.text
    for child in list(raw):
        root.append(child)  # moves it; the root declares the ovirt-vm prefix
    for el in root.iter():
        if isinstance(el.tag, str) and etree.QName(el).namespace is None:
            el.tag = _Q + el.tag
    return root


def to_libvirt(root: etree._Element) -> str:
    """The block as libvirt wants it: our elements without a namespace, others as they are."""
    out = deepcopy(root)
    for el in out.iter():
        if isinstance(el.tag, str) and etree.QName(el).namespace == _NS:
            el.tag = etree.QName(el).localname
    etree.cleanup_namespaces(out)
    return etree.tostring(out, encoding="unicode")


class LibvirtMetadataRepository(MetadataRepository):
    """The ``ovirt-vm`` block of each VM, read live and written live (+ config)."""

    def __init__(self, domains: Domains,
                 encoding: metadata_xml.Encoding | str = metadata_xml.Encoding.VDSM_450) -> None:
        self.domains = domains
        self.encoding = metadata_xml.Encoding.parse(encoding)

    def read(self, vm: VmId, drive: DriveName) -> DriveState:
        return metadata_xml.read(self.read_block(vm), drive)

    def read_all(self, vm: VmId, drives: Sequence[DriveName]) -> Mapping[DriveName, DriveState]:
        block = self.read_block(vm)
        return {d: metadata_xml.read(block, d) for d in drives}

    def write(self, vm: VmId, drive: DriveName, state: DriveState) -> None:
        def write(handle: Handle) -> None:
            block = from_libvirt(_fetch(handle))
            metadata_xml.write(block, drive, state, self.encoding)
            handle.dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, to_libvirt(block),
                                   metadata_xml.PREFIX, _NS, _write_flags(handle))
        self._call("write metadata", vm, write)

    def read_block(self, vm: VmId) -> etree._Element:
        """The whole ``<ovirt-vm:vm>`` block, namespace-qualified (for tests and tools)."""
        return from_libvirt(self._call("read metadata", vm, _fetch))

    def _call(self, what: str, vm: VmId, fn: Callable[[Handle], T]) -> T:
        try:
            return self.domains.run(vm, fn)
        except libvirt.libvirtError as err:
            log.debug("libvirt %s failed (code %s): %s", what, error_code(err), err)
            raise map_error(err, what, MetadataError, vm) from err


def _write_flags(handle: Handle) -> int:
    if not handle.persistent():
        return int(libvirt.VIR_DOMAIN_AFFECT_LIVE)  # transient: exists only while running
    if handle.dom.isActive():
        return int(libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return int(libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def _fetch(handle: Handle) -> str | None:
    try:
        return str(handle.dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, _NS,
                                       libvirt.VIR_DOMAIN_AFFECT_CURRENT))
    except libvirt.libvirtError as err:
        if error_code(err) == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None
        raise
