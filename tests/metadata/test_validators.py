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


@pytest.mark.parametrize(("code", "error_code", "why"), [
    ("91350100M000100Y44", "uscc_check_character", "check character"),
    ("91350100M000100Y4", "uscc_length", "18 characters"),
    ("91350100M00010OY43", "uscc_characters", "capital letters other than"),
    ("9135010OM000100Y43", "uscc_characters", "capital letters other than"),
])
def test_wrong_credit_codes_say_why(code, error_code, why):
    problem = check_uscc(code)
    assert problem.code == error_code and why in str(problem)


def test_a_short_credit_code_names_its_length():
    assert check_uscc("9135010").params == {"length": 7}


@pytest.mark.parametrize("number", ["13812345678", "19912345678", "15000000000"])
def test_mobile_numbers(number):
    assert check_cn_mobile(number) is None


@pytest.mark.parametrize("number", ["12812345678", "1381234567", "138123456789", "+8613812345678", "1381234567a"])
def test_not_mobile_numbers(number):
    problem = check_cn_mobile(number)
    assert problem.code == "not_a_mobile" and "11 digits" in str(problem)
