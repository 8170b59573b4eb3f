"""Named validators that metadata can attach to text fields (``validators: [uscc]``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

# GB 32100-2015: the unified social credit code uses digits and upper-case letters
# without I, O, S, V and Z; the 18th character is a check character over the first 17.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_SHAPE = re.compile(r"^[0-9A-HJ-NP-RTUWXY]{2}\d{6}[0-9A-HJ-NP-RTUWXY]{10}$")
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def uscc_check_character(first17: str) -> str:
    total = sum(USCC_ALPHABET.index(ch) * w for ch, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def check_uscc(value: str) -> str | None:
    if len(value) != 18:
        return f"a unified social credit code has 18 characters, not {len(value)}"
    if not _USCC_SHAPE.match(value):
        return "a unified social credit code uses digits and capital letters other than I, O, S, V, Z"
    if uscc_check_character(value[:17]) != value[17]:
        return "the check character (the 18th) does not match; the code is mistyped"
    return None


def check_cn_mobile(value: str) -> str | None:
    if not _CN_MOBILE.match(value):
        return "a mainland mobile number has 11 digits and starts with 1 (e.g. 13812345678)"
    return None


def check_email(value: str) -> str | None:
    return None if _EMAIL.match(value) else "not an email address (expected name@example.com)"


def check_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "not a web address (expected http:// or https:// and a host)"
    return None


VALIDATORS: dict[str, Callable[[str], str | None]] = {
    "uscc": check_uscc,
    "cn_mobile": check_cn_mobile,
    "email": check_email,
    "url": check_url,
}
