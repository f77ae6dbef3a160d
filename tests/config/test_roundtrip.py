"""Hypothesis: write random configs out, parse them back, get the meaning."""
from hypothesis import given, settings

from toolstack.config import ConfigError, parse_text

from .strategies import configs


@settings(max_examples=200, deadline=None)
@given(configs())
def test_write_then_parse(case):
    text, expect = case
    if expect is None:
        try:
            parse_text(text, "h.cfg")
        except ConfigError as e:
            assert "can't add [list]" in str(e)
        else:
            raise AssertionError("mixed += accepted")
        return
    assert parse_text(text, "h.cfg").as_dict() == expect


@settings(max_examples=60, deadline=None)
@given(configs())
def test_errors_never_escape_as_other_exceptions(case):
    text, _ = case
    # Any truncation of a valid file either parses or fails with ConfigError.
    for cut in range(0, len(text), max(1, len(text) // 7)):
        try:
            parse_text(text[:cut] + "\x7f" + text[cut:], "h.cfg")
        except ConfigError as e:
            assert str(e).startswith("h.cfg")
