"""The xl.cfg grammar and loader, rule by rule, with libxlutil's meanings."""
import pytest

from toolstack.config import ConfigError, parse_text
from toolstack.config.loader import LIST, OP_ADD, OP_ASSIGN, STRING, dequote


def vals(text):
    return parse_text(text, "t.cfg").as_dict()


def err(text):
    with pytest.raises(ConfigError) as e:
        parse_text(text, "t.cfg")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("t.cfg:")
    return msg


# ---- keys ---------------------------------------------------------------

def test_keys_lowercase_digits_underscore_dot():
    assert vals("a=1\nb_2=2\nx.y_z9=3\n") == {"a": "1", "b_2": "2", "x.y_z9": "3"}


@pytest.mark.parametrize("text,near", [
    ("Name=1\n", "`Name=1'"), ("_a=1\n", "`_a=1'"), ("9a=1\n", None),
    ("a-b=1\n", "`-b=1'"),
])
def test_bad_keys(text, near):
    msg = err(text)
    if near:
        assert near in msg


# ---- values -------------------------------------------------------------

def test_strings_both_quotes():
    assert vals("a='x y'\nb=\"p q\"\n") == {"a": "x y", "b": "p q"}


@pytest.mark.parametrize("src,out", [
    (r'"\\"', "\\"), (r'"\'"', "'"), (r'"\""', '"'), (r"'\"'", '"'),
    (r'"\n\t\r"', "\n\t\r"), (r'"\a\b\f\v"', "\a\b\f\v"),
    (r'"x\101y"', "xy"),        # Xen 4.17: octal escapes are consumed, not emitted
])
def test_string_escapes(src, out):
    assert vals(f"a={src}\n")["a"] == out


@pytest.mark.parametrize("src,what", [
    (r'"\x41"', "hexnumerical"), (r'"\1"', "octalnumerical"),
    (r'"\q"', "invalid character after backlash"),
])
def test_bad_escapes(src, what):
    assert what in err(f"a={src}\n")


def test_dequote_plain_fast_path():
    assert dequote('"abc"') == ("abc", None)


def test_hash_inside_string_is_not_a_comment():
    assert vals('a="x # y"\n') == {"a": "x # y"}


@pytest.mark.parametrize("num", ["0", "512", "0x1f", "0777", "09", "1abc", "0xfx"])
def test_numbers_are_kept_as_text(num):
    assert vals(f"a={num}\n") == {"a": num}


def test_number_and_string_positions():
    cfg = parse_text("a = 5\nb = 'x'\n", "t.cfg")
    a, b = cfg.get("a"), cfg.get("b")
    assert (a.line, a.column, a.value.kind, a.value.quoted) == (1, 1, STRING, False)
    assert (b.line, b.value.line, b.value.column, b.value.quoted) == (2, 2, 5, True)


@pytest.mark.parametrize("text,near", [
    ("a=1K\n", "`K'"), ("a=512 * 2\n", "`*'"), ("a=True\n", "`True'"),
    ('a="abc\n', "`\"abc'"), ("a=1\r\n", "lexical error"),
])
def test_lexical_errors_name_the_token(text, near):
    msg = err(text)
    assert near in msg and "lexical error" in msg


# ---- lists --------------------------------------------------------------

def test_lists_nest_span_lines_blank_lines_trailing_comma():
    text = "a = [\n\n  '1',\n\n  [ 2, [], [3,] ],\n\n]\n"
    assert vals(text) == {"a": ["1", ["2", [], ["3"]]]}


def test_empty_list_and_newline_before_comma():
    assert vals("a=[]\nb=[\n]\nc=[1\n,2]\n") == {"a": [], "b": [], "c": ["1", "2"]}


def test_list_value_kinds():
    v = parse_text("a=[1,[2]]\n", "t.cfg").get("a").value
    assert v.kind == LIST and v.data[1].kind == LIST and v.data[0].kind == STRING


@pytest.mark.parametrize("text", ["a=[,]\n", "a=[1,,2]\n", "a=[1 2]\n", "a=[1\n",
                                  "a=(1)\n", "a=]\n"])
def test_bad_lists(text):
    err(text)


def test_newline_only_inside_brackets():
    msg = err("a=\n1\n")
    assert "near <newline>" in msg and "unexpected NEWLINE" in msg


# ---- statements ----------------------------------------------------------

def test_semicolons_and_newlines_end_statements():
    assert vals("a=1;b=2;;\nc=3\n\n\n") == {"a": "1", "b": "2", "c": "3"}


def test_last_line_may_lack_newline():
    assert vals("a=1\nb='x'") == {"a": "1", "b": "x"}


def test_comments():
    assert vals("# top\na=1 # after\n#a=2\n   # indented\n") == {"a": "1"}


def test_comment_needs_its_newline():
    # libxlutil's comment rule is `#.*\n`: a comment on an unterminated last
    # line is a lexical error.
    assert "`#'" in err("a=1 # end")


def test_empty_file_and_blank_lines():
    assert vals("") == {} and vals("\n\n;\n") == {}


def test_two_values_on_one_line():
    assert "unexpected NUMBER" in err("a=1 2\n")


def test_assignment_without_value_or_key():
    assert "expecting STRING or NUMBER or '['" in err("a=\n")
    assert "unexpected '='" in err("=1\n")
    assert "end of file" in err("a")


def test_python_hint():
    msg = err("disk = ( 'a' )\n")
    assert "Python" in msg and "`('" in msg
    assert "Python" in err("a=-1\n")
    assert "Python" in err("print(x)\n".replace("print", "a="))


def test_no_python_hint_for_other_errors():
    assert "Python" not in err("a=1K\n")
    # Dots are allowed in keys, so this is a syntax error, not Python-looking.
    assert "Python" not in err("a=os.path\n")


def test_error_positions():
    msg = err("a=1\nb=2\nc = 3 * 4\n")
    assert msg.startswith("t.cfg:3:7:")


# ---- assignment semantics ------------------------------------------------

def test_last_assignment_wins():
    cfg = parse_text("a=1\nb=2\na=3\n", "t.cfg")
    assert cfg.as_dict() == {"a": "3", "b": "2"}
    assert cfg.get("a").line == 3 and len(cfg.settings) == 3


def test_plus_equals_strings_and_lists():
    assert vals("a='x'\na+='y'\na+=\"z\"\n") == {"a": "xyz"}
    assert vals("a=[1]\na+=[2,[3]]\n") == {"a": ["1", "2", ["3"]]}


def test_plus_equals_without_previous_is_plain():
    cfg = parse_text("a+='z'\n", "t.cfg")
    assert cfg.as_dict() == {"a": "z"} and cfg.get("a").op == OP_ADD


def test_assignment_after_add_resets():
    cfg = parse_text("a='x'\na+='y'\na='z'\n", "t.cfg")
    assert cfg.as_dict() == {"a": "z"} and cfg.get("a").op == OP_ASSIGN


@pytest.mark.parametrize("text", ["a='x'\na+=[1]\n", "a=[1]\na+='x'\n", "a=1\na+=[]\n"])
def test_plus_equals_mixing_is_an_error(text):
    msg = err(text)
    assert "can't add [list] to \"string\"" in msg and msg.startswith("t.cfg:2:")


def test_nul_byte_rejected():
    with pytest.raises(ConfigError):
        parse_text("a=1\x00\n", "t.cfg")


def test_parse_file_missing(tmp_path):
    from toolstack.config import parse_file
    with pytest.raises(ConfigError) as e:
        parse_file(tmp_path / "none.cfg")
    assert "unable to open configuration file" in str(e.value)


def test_parse_file_reads(tmp_path):
    from toolstack.config import parse_file
    p = tmp_path / "x.cfg"
    p.write_text("a = [ 'b' ]\n")
    assert parse_file(p).as_dict() == {"a": ["b"]}
