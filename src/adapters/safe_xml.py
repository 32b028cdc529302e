"""The one XML parser configuration for untrusted input (libvirt's answers, VM metadata)."""

from __future__ import annotations

from lxml import etree


def hardened_parser() -> etree.XMLParser:
    """No entity expansion, no DTD loading or validation, no network, no huge trees."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_blank_text=False)
