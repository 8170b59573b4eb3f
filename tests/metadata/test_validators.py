"""Named validators: unified social credit codes and mainland mobile numbers."""

from __future__ import annotations

import pytest

from loom.metadata.validators import check_cn_mobile, check_uscc, uscc_check_character

# Published codes of well-known companies (their check characters are right).
VALID_USCC = ["91350100M000100Y43", "91110000802100433B", "914403001922038216"]


@pytest.mark.parametrize("code", VALID_USCC)
def test_real_credit_codes_pass(code):
    assert check_uscc(code) is None
    assert uscc_check_character(code[:17]) == code[17]


@pytest.mark.parametrize(("code", "why"), [
    ("91350100M000100Y44", "check character"),
    ("91350100M000100Y4", "18 characters"),
    ("91350100M00010OY43", "capital letters other than"),
    ("9135010OM000100Y43", "capital letters other than"),
])
def test_wrong_credit_codes_say_why(code, why):
    assert why in check_uscc(code)


@pytest.mark.parametrize("number", ["13812345678", "19912345678", "15000000000"])
def test_mobile_numbers(number):
    assert check_cn_mobile(number) is None


@pytest.mark.parametrize("number", ["12812345678", "1381234567", "138123456789", "+8613812345678", "1381234567a"])
def test_not_mobile_numbers(number):
    assert "11 digits" in check_cn_mobile(number)
