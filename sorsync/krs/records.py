"""Whole records: a KRS record element as JSON, whatever its fields are called.

Document datatypes (SOR2 and any datatype the registry does not know) are stored this way, so
nothing a source sends is lost however its field lists differ from what we expect. The shape:

* an element with only text is its text (`""` when empty; `null` for `xsi:nil="true"`);
* an element with child elements or attributes is an object: children by name, attributes as
  `@name` (`@{namespace}name` when qualified by another namespace), and any text beside the
  children as `#text`;
* a name that repeats becomes a list of its values, in document order;
* a child in the record's own namespace is named by its local name; in any other namespace by
  `{namespace}local`, so nothing is merged by accident.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from sorsync.krs.errors import MalformedResponse

XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
MAX_DEPTH = 32  # a SOR record is two or three levels deep; more is a broken or hostile source
# One field's text: SOR values are names, addresses and codes of a few hundred characters at
# most; a megabyte is a broken or hostile source (the native walk in _pgrows.pyx agrees).
MAX_TEXT_CHARS = 1024 * 1024
# What no column should hold: C0 controls but tab, newline and carriage return; DEL; C1
# controls. XML 1.0 forbids most C0 ones already; C1 ones are well-formed XML but no SOR text.
bad_text = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SHOWN = 120  # characters of a refused value shown in a message


def bounded(text: object, limit: int = _SHOWN) -> str:
    """`text` for a message: at most `limit` characters, saying how much was left out."""
    if text is None:
        return ""
    value = text if isinstance(text, str) else str(text)
    if len(value) <= limit:
        return value
    return f"{value[:limit]}… ({len(value) - limit} more characters)"


def _check(text: str, name: str, where: str) -> str:
    if len(text) > MAX_TEXT_CHARS:
        raise MalformedResponse(
            f"{where} field {name}: value {bounded(text)!r} is {len(text)} characters long, more"
            f" than {MAX_TEXT_CHARS}; sorsync cannot store it, so the page is refused and the"
            " token did not move — report the record to the source's operator (NSP)"
        )
    if bad_text.search(text):
        raise MalformedResponse(
            f"{where} field {name}: value {bounded(text)!r} holds a control character;"
            " sorsync cannot store it, so the page is refused and the token did not move —"
            " report the record to the source's operator (NSP)"
        )
    return text


def split_tag(tag: str) -> tuple[str, str]:
    """Clark name → (namespace, local name); the namespace is "" when there is none."""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def record_value(record: etree._Element, where: str) -> dict[str, Any]:
    """The record element's children and attributes as a JSON object (see the module's rules)."""
    namespace, _ = split_tag(str(record.tag))
    flat = _flat(record, namespace)
    if flat is not None:
        return flat
    value = _value(record, namespace, 0, where)
    if not isinstance(value, dict):
        # A record with nothing but text (or nothing at all) still becomes an object.
        return {} if value in ("", None) else {"#text": value}
    return value


def _flat(record: etree._Element, namespace: str) -> dict[str, Any] | None:
    """The common record — no attributes, each child a leaf with text in the record's namespace,
    no name twice — read in one pass; None for anything else, which `_value` reads in full.
    (A SOR2 record has some 70 children: this pass is most of the client's work per record.)"""
    if record.attrib:
        return None
    prefix = f"{{{namespace}}}" if namespace else ""
    cut = len(prefix)
    out: dict[str, Any] = {}
    for child in record:
        tag = child.tag
        if tag.__class__ is not str:
            continue  # a comment or processing instruction
        if len(child) or child.attrib or not tag.startswith(prefix):
            return None
        key = tag[cut:]
        if key in out or "}" in key:
            return None
        text = child.text
        if text is None:
            out[key] = ""
        elif len(text) > MAX_TEXT_CHARS:
            return None  # `_value` refuses it, with the message
        else:
            out[key] = text
    # One search over the record's texts instead of one per field; `_value` says which field.
    if bad_text.search("".join(out.values())):
        return None
    return out


def _name(tag: str, namespace: str) -> str:
    ns, local = split_tag(tag)
    return local if ns == namespace else f"{{{ns}}}{local}"


def _value(el: etree._Element, namespace: str, depth: int, where: str) -> Any:
    if depth > MAX_DEPTH:
        raise MalformedResponse(
            f"{where} field {bounded(_name(str(el.tag), namespace))}: elements nested more than"
            f" {MAX_DEPTH} levels deep; a KRS record is two or three levels deep, so the source"
            " is broken — refused, the token did not move; report the record to the source's"
            " operator (NSP)"
        )
    attributes = el.attrib
    children = [child for child in el if isinstance(child.tag, str)]
    label = _name(str(el.tag), namespace)
    if not children and not attributes:
        return _check(el.text, label, where) if el.text is not None else ""
    if not children and len(attributes) == 1 and attributes.get(XSI_NIL) in ("true", "1"):
        return None
    out: dict[str, Any] = {}
    for name, attribute in attributes.items():
        ns, local = split_tag(str(name))
        # An attribute without a prefix has no namespace at all: it is the element's own.
        key = "@" + (local if ns in ("", namespace) else f"{{{ns}}}{local}")
        out[key] = _check(str(attribute), f"{label}/{key}", where)
    text = el.text
    # Indentation between children is not content; text beside attributes alone is.
    if text is not None and (not children or text.strip()):
        out["#text"] = _check(text, label, where)
    for child in children:
        key = _name(str(child.tag), namespace)
        value = _value(child, namespace, depth + 1, where)
        if key not in out:
            out[key] = value
        elif isinstance(out[key], _Repeated):
            out[key].append(value)
        else:
            out[key] = _Repeated((out[key], value))
    return {k: list(v) if isinstance(v, _Repeated) else v for k, v in out.items()}


class _Repeated(list[Any]):
    """A name seen more than once under one parent (told apart from a value that is a list)."""
