"""The one lxml parser configuration for XML sorsync did not write itself.

Depends on nothing else in sorsync, so every layer (client, simulator, DGWS) may use it.
"""

from __future__ import annotations

from lxml import etree


def safe_parser(*, remove_blank_text: bool = False, huge_tree: bool = False) -> etree.XMLParser:
    """Untrusted input: no entity expansion, no DTD, no network; libxml2's default limits stay on
    unless `huge_tree` (for a caller that bounds the input's size itself and checks depth and
    text lengths after parsing, so that it can name the record at fault).

    Fresh on every call: an lxml parser must not be shared between threads, so a caller that
    keeps one keeps it per thread.
    """
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=huge_tree,
        collect_ids=False,
        remove_blank_text=remove_blank_text,
    )
