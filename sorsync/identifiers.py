"""Validators for the identifiers sorsync accepts: SOR ids, SHAK codes, GLNs, ydernumre.

Pure functions, used by the API before any query and by the fictive data generator.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

# Verhoeff tables (dihedral group D5): multiplication, permutation, inverse.
_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_INV = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)


def verhoeff_check_digit(digits: str) -> int:
    """The Verhoeff check digit to append to `digits`."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _D[c][_P[(i + 1) % 8][int(ch)]]
    return _INV[c]


def _digits(value: str) -> bool:
    # str.isdigit() also accepts non-ASCII digits such as "²" or Arabic-Indic ones.
    return value.isascii() and value.isdigit()


def verhoeff_valid(number: str) -> bool:
    if not _digits(number):
        return False
    c = 0
    for i, ch in enumerate(reversed(number)):
        c = _D[c][_P[i % 8][int(ch)]]
    return c == 0


SOR_NAMESPACE = "1000016"
SOR_PARTITION = "00"
_SOR_ID = re.compile(r"[1-9][0-9]{0,7}" + SOR_NAMESPACE + SOR_PARTITION + r"[0-9]")


def make_sor_id(sequence: int) -> str:
    """A SOR id from a running number: sequence + namespace 1000016 + partition 00 + Verhoeff."""
    if not 1 <= sequence < 10**8:
        raise ValueError("SOR running number must be from 1 to 99999999")
    body = f"{sequence}{SOR_NAMESPACE}{SOR_PARTITION}"
    return body + str(verhoeff_check_digit(body))


@lru_cache(maxsize=65536)  # the API checks the same ids over and over; Verhoeff is a loop
def sor_id_problem(value: str) -> str | None:
    """None when `value` is a valid SOR id, else what is wrong with it (for a person)."""
    if not _digits(value) or not 11 <= len(value) <= 18:
        return "a SOR id is 11 to 18 digits"
    if not _SOR_ID.fullmatch(value):
        return "a SOR id ends in namespace 1000016, partition 00 and a check digit"
    if not verhoeff_valid(value):
        return "the SOR id's Verhoeff check digit is wrong"
    return None


_SHAK = re.compile(r"[0-9A-Z]{4}(?:[0-9A-Z]{2}[0-9A-Z]?)?")


def normalise_shak(value: str) -> str:
    """SHAK codes as people type them: lower-case letters are the same code (`157501n`).
    ASCII only: str.upper() would turn "ß" into "SS" and make a valid-looking code of it."""
    return value.upper() if value.isascii() else value


def shak_problem(value: str) -> str | None:
    if not _SHAK.fullmatch(value):
        return "a SHAK code is 4, 6 or 7 characters of 0-9 and A-Z"
    return None


def gs1_check_digit(digits: str) -> int:
    """GS1 mod-10 check digit for the digits before it (weights 3,1,3,… from the right)."""
    total = sum(int(ch) * (3 if i % 2 == 0 else 1) for i, ch in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


def make_gln(body12: str) -> str:
    if len(body12) != 12 or not _digits(body12):
        raise ValueError("a GLN body is 12 digits")
    return body12 + str(gs1_check_digit(body12))


def gln_problem(value: str) -> str | None:
    if len(value) != 13 or not _digits(value):
        return "a GLN (EAN location number) is 13 digits"
    if gs1_check_digit(value[:12]) != int(value[12]):
        return "the GLN's GS1 check digit is wrong"
    return None


_YDER = re.compile(r"[0-9]{1,9}")


def ydernummer_problem(value: str) -> str | None:
    if not _YDER.fullmatch(value):
        return "a ydernummer is 1 to 9 digits"
    return None


def normalise_ydernummer(value: str) -> str:
    """Ydernumre are compared without leading zeros (NSP's importer strips them)."""
    return value.lstrip("0") or "0"


def identifier_problem(value: str, validator: Callable[[str], str | None]) -> str | None:
    """Run a validator of this module on ASCII letters and digits only: str.isdigit and `$`
    also accept non-ASCII digits and a trailing newline, which must not reach them."""
    if not (value.isascii() and value.isalnum()):
        return "only the ASCII letters A-Z and digits 0-9 are allowed"
    return validator(value)
