"""Named validators that metadata can attach to text fields (``validators: [uscc]``).

Each returns None for a good value, else an ``InvalidValue`` naming what is wrong: a code
and the values its English message quotes, so the screens can say it in the user's
language."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from loom.errors import InvalidValue

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


def check_uscc(value: str) -> InvalidValue | None:
    if len(value) != 18:
        return InvalidValue("uscc_length", f"a unified social credit code has 18 characters, not {len(value)}",
                            length=len(value))
    if not _USCC_SHAPE.match(value):
        return InvalidValue("uscc_characters",
                            "a unified social credit code uses digits and capital letters other than I, O, S, V, Z")
    if uscc_check_character(value[:17]) != value[17]:
        return InvalidValue("uscc_check_character",
                            "the check character (the 18th) does not match; the code is mistyped")
    return None


def check_cn_mobile(value: str) -> InvalidValue | None:
    if not _CN_MOBILE.match(value):
        return InvalidValue("not_a_mobile",
                            "a mainland mobile number has 11 digits and starts with 1 (e.g. 13812345678)")
    return None


def check_email(value: str) -> InvalidValue | None:
    if not _EMAIL.match(value):
        return InvalidValue("not_an_email", "not an email address (expected name@example.com)")
    return None


def check_url(value: str) -> InvalidValue | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return InvalidValue("not_a_url", "not a web address (expected http:// or https:// and a host)")
    return None


VALIDATORS: dict[str, Callable[[str], InvalidValue | None]] = {
    "uscc": check_uscc,
    "cn_mobile": check_cn_mobile,
    "email": check_email,
    "url": check_url,
}
