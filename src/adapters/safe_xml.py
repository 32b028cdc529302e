"""The one XML parser configuration for untrusted input (libvirt's answers, VM metadata)."""

from __future__ import annotations

import threading

from lxml import etree

_per_thread = threading.local()


def hardened_parser() -> etree.XMLParser:
    """No entity expansion, no DTD loading or validation, no network, no huge trees.

    One parser per thread (lxml parsers must not be shared between threads): every
    document parsed keeps its parser alive, and with a parser per document recovering
    10,000 VMs took 0.98 s against 0.70 s (``ovirt-cdrom bench``, median of 9 runs each,
    taken in turn): five more objects per VM for the cyclic collector to walk.
    """
    parser: etree.XMLParser | None = getattr(_per_thread, "parser", None)
    if parser is None:
        parser = _per_thread.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=False, remove_blank_text=False)
    return parser
