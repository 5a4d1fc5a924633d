"""Taiwan identity numbers: validation, normalisation and the masked display form.

* National ID (國民身分證統一編號) and the resident certificate number of the same shape:
  a letter for the place of first registration, then 9 digits, the last a check digit.
  The second character is 1 or 2 for citizens, 8 or 9 for the resident certificates issued
  since 2021 (the older letter-letter resident form is not accepted for new enrolments).
* Unified business number (統一編號) of a company: 8 digits with the Ministry of Finance
  weighted check (sum divisible by 5, the rule in force since 2023, which also accepts
  every number valid under the earlier divisible-by-10 rule).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# Letter → two-digit code of the place of first registration (I, O, W, Z … are out of order).
_LETTER_CODES = {
    "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17, "I": 34,
    "J": 18, "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23, "Q": 24, "R": 25,
    "S": 26, "T": 27, "U": 28, "V": 29, "W": 32, "X": 30, "Y": 31, "Z": 33,
}
_NATIONAL_ID = re.compile(r"^[A-Z][1289][0-9]{8}$")
_UBN = re.compile(r"^[0-9]{8}$")
_UBN_WEIGHTS = (1, 2, 1, 2, 1, 2, 4, 1)


class IdentityKind(str, enum.Enum):
    """Which kind of identity number an investor is known by."""

    NATIONAL_ID = "national_id"
    BUSINESS_NUMBER = "business_number"


@dataclass(frozen=True)
class Identity:
    """A validated identity number in its canonical form."""

    kind: IdentityKind
    number: str

    @property
    def masked(self) -> str:
        """The display form: A12****789 for a national ID, 12****78 for a business number."""
        if self.kind is IdentityKind.NATIONAL_ID:
            return self.number[:3] + "****" + self.number[-3:]
        return self.number[:2] + "****" + self.number[-2:]


class InvalidIdentity(ValueError):
    """The number is malformed or its check digit is wrong."""


def national_id_is_valid(number: str) -> bool:
    """Check shape and check digit of a national ID / new-style resident certificate number."""
    if not _NATIONAL_ID.match(number):
        return False
    code = _LETTER_CODES[number[0]]
    digits = [int(c) for c in number[1:]]
    total = code // 10 + (code % 10) * 9
    total += sum(d * w for d, w in zip(digits[:8], (8, 7, 6, 5, 4, 3, 2, 1)))
    total += digits[8]
    return total % 10 == 0


def business_number_is_valid(number: str) -> bool:
    """Check a unified business number with the weighted digit-sum rule."""
    if not _UBN.match(number):
        return False
    total = 0
    for digit, weight in zip(number, _UBN_WEIGHTS):
        product = int(digit) * weight
        total += product // 10 + product % 10
    if total % 5 == 0:
        return True
    # When the 7th digit is 7 its product (28) may count as 10 or as 1.
    return number[6] == "7" and (total + 1) % 5 == 0


def parse_identity(kind: IdentityKind | str, number: str) -> Identity:
    """Normalise (trim, upper-case) and validate; raise :class:`InvalidIdentity`."""
    kind = IdentityKind(kind)
    canonical = number.strip().upper()
    valid = (national_id_is_valid(canonical) if kind is IdentityKind.NATIONAL_ID
             else business_number_is_valid(canonical))
    if not valid:
        raise InvalidIdentity(f"not a valid {kind.value.replace('_', ' ')}")
    return Identity(kind=kind, number=canonical)
