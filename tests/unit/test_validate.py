"""bertdemo.validate: the one set of input checks, one message style (name, what it takes, what came)."""

from __future__ import annotations

import math

import pytest

from bertdemo import validate
from bertdemo.errors import BadInput, NotFound, UserError


@pytest.mark.parametrize("value, expected", [(3, 3.0), ("3", 3.0), (2.5, 2.5), ("1e1", 10.0)])
def test_number_accepts_numbers_and_text_holding_one(value, expected):
    assert validate.number(value, "X", 0, 10) == expected


@pytest.mark.parametrize("value", [None, True, "abc", [1], {}, math.nan, math.inf, -1, 11, 2.5])
def test_number_refuses_with_the_name_the_range_and_the_value(value):
    with pytest.raises(BadInput) as exc:
        validate.number(value, "The layer", 0, 10, whole=True, note="input embeddings")
    assert str(exc.value) == f"The layer must be a whole number from 0 (input embeddings) to 10, got {value!r}."


def test_open_low_end_and_long_values_are_cut():
    with pytest.raises(BadInput, match=r"^Rate must be a number above 0 and up to 0.5, got 0\.$"):
        validate.number(0, "Rate", 0, 0.5, low_open=True)
    assert validate.number(0.5, "Rate", 0, 0.5, low_open=True) == 0.5
    with pytest.raises(BadInput) as exc:
        validate.number("x" * 500, "Rate", 0, 1)
    assert len(str(exc.value)) < 150 and str(exc.value).endswith("....")


@pytest.mark.parametrize("value, expected", [(1, 1), (1.0, 1), ("7", 7)])
def test_whole_numbers_come_in_any_numeric_form(value, expected):
    assert validate.whole(value, "The id") == expected


@pytest.mark.parametrize("value", [None, True, 1.5, "abc", [1], math.nan, math.inf])
def test_whole_refuses_what_is_no_whole_number(value):
    with pytest.raises(BadInput, match=r"^The id must be a whole number, got "):
        validate.whole(value, "The id")


def test_example_ids_outside_the_database_range_are_not_found():
    assert validate.example_id("12") == 12
    for n in (0, -1, 2**63):
        with pytest.raises(NotFound, match=f"No example with id {n}"):
            validate.example_id(n)


def test_lists_searches_and_choices():
    assert validate.id_list(None) == [] and validate.id_list([1, "2"]) == [1, 2]
    with pytest.raises(BadInput, match="exclude must be a list of example ids, got '1,2'"):
        validate.id_list("1,2")
    with pytest.raises(BadInput, match="the limit is 100,000"):
        validate.id_list(range(100_001))
    assert validate.search_text(None) == "" and validate.search_text("ok") == "ok"
    with pytest.raises(BadInput, match="lone UTF-16 surrogates"):
        validate.search_text("a\ud800")
    assert validate.choice("b", "The mode", ("a", "b")) == "b"
    with pytest.raises(BadInput, match=r"^The mode must be one of \['a', 'b'\], got 3\.$"):
        validate.choice(3, "The mode", ("a", "b"))


def test_every_refusal_is_a_user_error_and_a_value_error():
    """BadInput is both: the UI shows it (UserError), and code written against setfit-style
    argument checks (ValueError) still catches it."""
    with pytest.raises(UserError):
        validate.whole("x", "n")
    with pytest.raises(ValueError):
        validate.whole("x", "n")


def test_flag_takes_true_false_none_and_nothing_else():
    from bertdemo.validate import flag

    assert [flag(v, "x") for v in (True, False, None, 1, 0)] == [True, False, False, True, False]
    for bad in ("false", "yes", 2, [], 0.5):
        with pytest.raises(BadInput, match="x must be true or false, got"):
            flag(bad, "x")
