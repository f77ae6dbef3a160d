"""Differential tests of the grammar against Debian's libxlutil (ctypes).

libxlutil's xlu_cfg_readdata is Xen's own parser: for every input both must
agree on acceptance and on every value.  Skips where the library is absent.
"""
import pytest
from hypothesis import given, settings

from toolstack.config import ConfigError, parse_text

from . import libxlutil
from .strategies import configs

LIB = libxlutil.load()
pytestmark = pytest.mark.skipif(LIB is None, reason="libxlutil.so.4.17 not installed "
                                "(Debian xen-utils-4.17 / libxen-dev)")

SAMPLES = [
    "a=1\n", "a = 512 * 2\n", "disk = ( 1 )\n", "A=1\n", 'a="abc\n', "a=1K\n",
    "a=[1,[2,3],]\n", 'a="x"\na+="y"', 'a="x"\na+=[1]\n', "a=1 # c", "a=1 # c\n",
    "a='it\\'s'\n", 'a="\\x41"\n', 'a="\\101"\n', 'a="\\1"\n', "a.b=1\n",
    "import os\n", "a=\n", "a=[\n\n1,\n\n2,\n\n]\n", "a=1;b=2;\n", "a=0x1f\n",
    "a=09\n", "=1\n", "a=1 2\n", "a=-1\n", "a=[1 2]\n", "a=[,]", "a=[1,,2]",
    "a=[]", "a=[\n]", 'a="a\\"b"', 'a="a\\\\"', 'a="\\n\\t"', 'a="#x" # y',
    'a="a\\\nb"\n', 'a="\\z"', "a=1\n\n\n", "\n\na=[]", "a=1\r\n", "a\t=\t1\n",
    "a=1;;b=2", 'a="""x"""\n', "a=True\n", "a=1 # x\n#y", "a+=[1]\na+=[[2]]\n",
    "", ";", "\n", "a=[[[]]]", "a=[1,\n2\n,3]", "a = [ 'x' , ]\nb = 'y'",
    "a=1\nb=2\na=3\n", "_a=1\n", "a_=1\n", "a9.z=1\n", "a='\\a\\b\\f\\v\\r'\n",
    "a=[1]\na+='x'\n", "a=1\na+=2\n", "a='x';a+='y';a+='z'\n", "a = 'x' b = 'y'\n",
]


def both(text):
    rc, report, values = libxlutil.parse(LIB, text.encode("latin-1"),
                                         _names(text))
    try:
        ours = parse_text(text, "test.cfg").as_dict()
    except ConfigError as e:
        ours = e
    return rc, report, values, ours


def _names(text):
    import re
    return sorted(set(re.findall(r"[a-z][._0-9a-z]*", text)))


@pytest.mark.parametrize("text", SAMPLES)
def test_samples_agree(text):
    rc, report, values, ours = both(text)
    if rc:
        assert isinstance(ours, ConfigError), (report, ours)
    else:
        assert not isinstance(ours, ConfigError), (text, ours)
        assert ours == values


@pytest.mark.parametrize("text,line", [
    ("a=1\nb = 512 * 2\n", 2), ("a=1\n\nc=(\n", 3), ('x=1\ny="\\q"\n', 2),
    ("a=[1]\na+='s'\n", 2),
])
def test_error_lines_agree(text, line):
    rc, report, _, ours = both(text)
    assert rc and report.startswith(f"test.cfg:{line}:")
    assert str(ours).startswith(f"test.cfg:{line}:")


@settings(max_examples=200, deadline=None)
@given(configs())
def test_generated_configs_agree(case):
    text, _ = case
    rc, report, values, ours = both(text)
    if rc:
        assert isinstance(ours, ConfigError), report
    else:
        assert ours == values


@pytest.mark.parametrize("value", [
    "0", "512", "0x1f", "'0X1F'", "010", "09", "1abc", "0xfx", "'  12'", "'12 '", "'-5'",
    "'+7'", "'-0x10'", "'0x'", "''", "'9223372036854775807'", "'9223372036854775808'",
    "'-9223372036854775808'", "'-9223372036854775809'", "'1e3'", "'0777'", "'08'",
    "[1]",
])
def test_numbers_read_like_xlu_cfg_get_long(value):
    from toolstack.config import values
    text = f"n = {value}\n"
    rc, real = libxlutil.get_long(LIB, text.encode(), "n")
    try:
        ours = values.get_long(parse_text(text, "test.cfg"), "n")
    except ConfigError:
        ours = None
    assert ours == real, (value, rc)


def test_plus_equals_number_refused_like_xlu():
    from toolstack.config import values
    rc, _ = libxlutil.get_long(LIB, b"n += 5\n", "n")
    assert rc != 0
    with pytest.raises(ConfigError):
        values.get_long(parse_text("n += 5\n", "t.cfg"), "n")
