"""The shared parser for untrusted XML (sorsync.xmlsafe)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from sorsync.xmlsafe import safe_parser


def test_internal_entities_are_not_expanded() -> None:
    doc = b'<!DOCTYPE r [<!ENTITY e "expanded">]><r>&e;</r>'
    root = etree.fromstring(doc, safe_parser())
    assert root.text is None
    assert etree.tostring(root) == b"<r>&e;</r>"  # kept as a reference, never replaced


def test_external_entities_are_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do-not-read")
    doc = f'<!DOCTYPE r [<!ENTITY x SYSTEM "{secret.as_uri()}">]><r>&x;</r>'.encode()
    root = etree.fromstring(doc, safe_parser())
    assert root.text is None
    assert etree.tostring(root) == b"<r>&x;</r>"


def test_entity_amplification_is_refused() -> None:
    entities = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    )
    doc = f"<!DOCTYPE r [{entities}]><r>&a9;</r>".encode()
    with pytest.raises(etree.XMLSyntaxError, match="amplification"):
        etree.fromstring(doc, safe_parser())


def test_every_call_gives_a_fresh_parser() -> None:
    # lxml parsers must not be shared between threads
    assert safe_parser() is not safe_parser()


def test_blank_text_is_kept_unless_asked() -> None:
    doc = b"<r>\n  <a/>\n</r>"
    assert etree.fromstring(doc, safe_parser()).text == "\n  "
    assert etree.fromstring(doc, safe_parser(remove_blank_text=True)).text is None
