"""Enveloped XML-DSig as the SOSI federation uses it on ID cards
(docs/reference/krs-protocol.md §3.2).

The profile is fixed and small, so it is implemented directly with lxml (exclusive c14n) and
`cryptography` (RSA PKCS#1 v1.5) instead of signxml: signxml is not a dependency of sorsync,
refuses SHA-1 unless told otherwise, and we need byte-for-byte control of the `ds:Signature`
layout (lowercase `id` attributes, `id="OCESSignature"`, no whitespace) that NSP's SEAL expects.

Layout written and accepted (exactly that of the real 2013 capture):

    ds:Signature id="OCESSignature"          last child of the signed element
      ds:SignedInfo
        ds:CanonicalizationMethod            exc-c14n
        ds:SignatureMethod                   rsa-sha1
        ds:Reference URI="#<id of the signed element>"
          ds:Transforms                      enveloped-signature, exc-c14n
          ds:DigestMethod                    sha1
          ds:DigestValue
      ds:SignatureValue
      ds:KeyInfo/ds:X509Data/ds:X509Certificate

Verification also accepts rsa-sha256/sha256 (NSP may move its STS off SHA-1,
docs/reference/krs-protocol.md §10).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from sorsync.krs.wire import NS_DS

ALG_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ALG_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
ALG_RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
ALG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ALG_SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
ALG_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

SIGNATURE_ID = "OCESSignature"

_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    ALG_RSA_SHA1: hashes.SHA1,
    ALG_RSA_SHA256: hashes.SHA256,
}
_DIGESTS = {ALG_SHA1: "sha1", ALG_SHA256: "sha256"}


def _ds(name: str) -> str:
    return f"{{{NS_DS}}}{name}"


class SignatureError(Exception):
    """The XML signature is missing, malformed, does not match, or is not from a trusted signer."""


class MalformedSignature(SignatureError):
    """The signature does not follow the SOSI profile (missing parts, other algorithms, …)."""


class DigestMismatch(SignatureError):
    """The signed element was changed after signing (its digest no longer matches)."""


class BadSignatureValue(SignatureError):
    """SignedInfo was changed after signing, or the signature was made with another key."""


class UntrustedSigner(SignatureError):
    """The signature is intact but the signing certificate is not one we trust."""


def exc_c14n(element: etree._Element) -> bytes:
    """Exclusive XML canonicalisation (no comments) of an element subtree."""
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)


def _digest_without(signed: etree._Element, signature: etree._Element, algorithm: str) -> bytes:
    """Digest of `signed` after the enveloped-signature transform removed `signature`.

    Works on a copy so the caller's tree is untouched. The signature's tail text belongs to the
    document, not to the signature, so it is kept (lxml's `remove` would drop it).
    """
    path: list[int] = []
    node: etree._Element | None = signature
    while node is not None and node is not signed:
        parent = node.getparent()
        if parent is None:
            raise MalformedSignature("the signature is not inside the element it signs")
        path.append(parent.index(node))
        node = parent
    clone = copy.deepcopy(signed)
    target = clone
    for index in reversed(path):
        target = target[index]
    _remove_keep_tail(target)
    return hashlib.new(algorithm, exc_c14n(clone)).digest()


def _remove_keep_tail(element: etree._Element) -> None:
    parent = element.getparent()
    assert parent is not None
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, _ds(name))
    if text is not None:
        child.text = text
    return child


def sign(
    element: etree._Element,
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    *,
    signature_id: str = SIGNATURE_ID,
) -> etree._Element:
    """Sign `element` (which must carry an `id` attribute) in place; return the `ds:Signature`.

    The signature is appended as the element's last child, with no whitespace anywhere, so the
    result can be serialised once and sent verbatim.
    """
    ref_id = element.get("id")
    if not ref_id:
        raise MalformedSignature("the element to sign has no id attribute")
    if element.find(_ds("Signature")) is not None:
        raise MalformedSignature("the element is already signed")
    digest = hashlib.sha1(exc_c14n(element)).digest()  # noqa: S324 - the SOSI profile is SHA-1

    # Declare ds on the Signature only if the element does not already bind it (cosmetic; the
    # canonical form only carries namespaces that are visibly used).
    nsmap = None if element.nsmap.get("ds") == NS_DS else {"ds": NS_DS}
    signature = etree.SubElement(element, _ds("Signature"), nsmap=nsmap)
    signature.set("id", signature_id)
    signed_info = _sub(signature, "SignedInfo")
    _sub(signed_info, "CanonicalizationMethod").set("Algorithm", ALG_EXC_C14N)
    _sub(signed_info, "SignatureMethod").set("Algorithm", ALG_RSA_SHA1)
    reference = _sub(signed_info, "Reference")
    reference.set("URI", f"#{ref_id}")
    transforms = _sub(reference, "Transforms")
    _sub(transforms, "Transform").set("Algorithm", ALG_ENVELOPED)
    _sub(transforms, "Transform").set("Algorithm", ALG_EXC_C14N)
    _sub(reference, "DigestMethod").set("Algorithm", ALG_SHA1)
    _sub(reference, "DigestValue", base64.b64encode(digest).decode("ascii"))
    value = key.sign(exc_c14n(signed_info), padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    _sub(signature, "SignatureValue", base64.b64encode(value).decode("ascii"))
    x509_data = _sub(_sub(signature, "KeyInfo"), "X509Data")
    der = cert.public_bytes(serialization.Encoding.DER)
    _sub(x509_data, "X509Certificate", base64.b64encode(der).decode("ascii"))
    return signature


def _one(parent: etree._Element, name: str) -> etree._Element:
    found = parent.findall(_ds(name))
    if len(found) != 1:
        raise MalformedSignature(f"expected exactly one ds:{name}, found {len(found)}")
    return found[0]


def _algorithm(parent: etree._Element, name: str) -> str:
    return _one(parent, name).get("Algorithm") or ""


def _b64(element: etree._Element, what: str) -> bytes:
    text = "".join((element.text or "").split())
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise MalformedSignature(f"{what} is not base64") from None


def signing_certificate(signature: etree._Element) -> x509.Certificate:
    """The certificate in `ds:KeyInfo/ds:X509Data/ds:X509Certificate` (not yet trusted)."""
    key_info = _one(signature, "KeyInfo")
    x509_data = _one(key_info, "X509Data")
    der = _b64(_one(x509_data, "X509Certificate"), "X509Certificate")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise MalformedSignature("X509Certificate is not a DER certificate") from None


def verify_signature(
    signature: etree._Element,
    trusted_certs: Iterable[x509.Certificate],
    *,
    trust_embedded: bool = False,
) -> x509.Certificate:
    """Verify one `ds:Signature` that signs its parent element; return the signer's certificate.

    `trusted_certs`: the signer must be one of these (compared by DER bytes). With
    `trust_embedded=True` the embedded certificate is accepted as it is — that only proves the
    content is intact, not who signed it (useful for self-signed request cards and captures).
    """
    signed = signature.getparent()
    if signed is None:
        raise MalformedSignature("the signature has no parent element to sign")
    signed_info = _one(signature, "SignedInfo")
    if _algorithm(signed_info, "CanonicalizationMethod") != ALG_EXC_C14N:
        raise MalformedSignature("CanonicalizationMethod is not exclusive c14n")
    signature_hash = _SIGNATURE_HASHES.get(_algorithm(signed_info, "SignatureMethod"))
    if signature_hash is None:
        raise MalformedSignature("SignatureMethod is neither rsa-sha1 nor rsa-sha256")
    reference = _one(signed_info, "Reference")
    ref_id = signed.get("id")
    if not ref_id or reference.get("URI") != f"#{ref_id}":
        # Only the enveloping element may be referenced: a signature pointing elsewhere would
        # let a signed copy vouch for an unsigned element (signature wrapping).
        raise MalformedSignature("the Reference URI does not point at the element holding it")
    matches = signed.getroottree().getroot().xpath("//*[@id=$v]", v=ref_id)
    if not isinstance(matches, list) or len(matches) != 1:
        raise MalformedSignature(f'more than one element has id="{ref_id}"')
    transforms = [t.get("Algorithm") for t in _one(reference, "Transforms")]
    if transforms != [ALG_ENVELOPED, ALG_EXC_C14N]:
        raise MalformedSignature("Transforms are not enveloped-signature + exclusive c14n")
    digest_name = _DIGESTS.get(_algorithm(reference, "DigestMethod"))
    if digest_name is None:
        raise MalformedSignature("DigestMethod is neither sha1 nor sha256")
    expected = _b64(_one(reference, "DigestValue"), "DigestValue")
    signature_value = _b64(_one(signature, "SignatureValue"), "SignatureValue")
    cert = signing_certificate(signature)

    actual = _digest_without(signed, signature, digest_name)
    if not hmac.compare_digest(actual, expected):
        raise DigestMismatch(
            f'the content of the element with id="{ref_id}" was changed after it was signed '
            "(digest mismatch)"
        )
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise MalformedSignature("the signing certificate does not hold an RSA key")
    try:
        public_key.verify(
            signature_value, exc_c14n(signed_info), padding.PKCS1v15(), signature_hash()
        )
    except InvalidSignature:
        raise BadSignatureValue(
            "the signature value does not match SignedInfo and the embedded certificate"
        ) from None
    if not trust_embedded:
        der = cert.public_bytes(serialization.Encoding.DER)
        if not any(der == t.public_bytes(serialization.Encoding.DER) for t in trusted_certs):
            raise UntrustedSigner(
                f"the signature was made by {cert.subject.rfc4514_string()}, "
                "which is not a trusted STS certificate"
            )
    return cert


def verify(
    element: etree._Element,
    trusted_certs: Iterable[x509.Certificate],
    *,
    trust_embedded: bool = False,
) -> x509.Certificate:
    """Verify the enveloped `ds:Signature` of `element` (its last child); return the signer.

    Raises a `SignatureError` subclass naming what is wrong.
    """
    children = [c for c in element if isinstance(c.tag, str)]
    if not children or children[-1].tag != _ds("Signature"):
        raise MalformedSignature("the element is not signed (no ds:Signature as its last child)")
    if len(element.findall(_ds("Signature"))) != 1:
        raise MalformedSignature("the element carries more than one ds:Signature")
    return verify_signature(children[-1], trusted_certs, trust_embedded=trust_embedded)
