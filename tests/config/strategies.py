"""Hypothesis strategies that write xl.cfg files, and the model of what the
written file means (last assignment wins, += concatenates like kinds)."""
from hypothesis import strategies as st

KEYS = st.from_regex(r"[a-z][._0-9a-z]{0,6}", fullmatch=True)
NUMBERS = st.from_regex(r"[0-9][0-9a-fx]{0,6}", fullmatch=True)
TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e)
               | st.sampled_from("\n\t\r\a\b\f\v"), max_size=12)

_ESC = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a",
        "\b": "\\b", "\f": "\\f", "\v": "\\v"}


def quote(s, q):
    return q + "".join(_ESC.get(c, "\\" + c if c == q else c) for c in s) + q


@st.composite
def atoms(draw):
    if draw(st.booleans()):
        return ("num", draw(NUMBERS))
    return ("str", draw(TEXT), draw(st.sampled_from("'\"")))


values = st.recursive(atoms(), lambda inner: st.lists(inner, max_size=4)
                      .map(lambda xs: ("list", xs)), max_leaves=10)


def meaning(v):
    if v[0] == "num" or v[0] == "str":
        return v[1]
    return [meaning(x) for x in v[1]]


@st.composite
def render_value(draw, v):
    if v[0] == "num":
        return v[1]
    if v[0] == "str":
        return quote(v[1], v[2])
    sep = draw(st.sampled_from([",", " , ", ",\n", "\n,\n\n", ", "]))
    items = [draw(render_value(x)) for x in v[1]]
    body = sep.join(items)
    if items and draw(st.booleans()):
        body += draw(st.sampled_from([",", ",\n", " ,\n\n"]))
    pad = draw(st.sampled_from(["", " ", "\n", "\n\n  "]))
    return "[" + pad + body + "]"


@st.composite
def configs(draw):
    """(text, expected dict or None when the file must be rejected)."""
    stmts = draw(st.lists(st.tuples(KEYS, st.sampled_from(["=", "+="]), values),
                          max_size=8))
    lines, expect, rejected = [], {}, False
    for key, op, v in stmts:
        m = meaning(v)
        if op == "+=" and key in expect:
            prev = expect[key]
            if isinstance(prev, list) != isinstance(m, list):
                rejected = True
            else:
                m = prev + m
        expect[key] = m
        ws = draw(st.sampled_from(["", " ", "\t", "  "]))
        end = draw(st.sampled_from(["\n", ";", " ;\n", "\n\n", " # note\n"]))
        lines.append(f"{key}{ws}{op}{ws}{draw(render_value(v))}{end}")
    text = draw(st.sampled_from(["", "# header\n", "\n"])) + "".join(lines)
    if lines and lines[-1].endswith("\n") and not lines[-1].endswith("note\n") \
            and draw(st.booleans()):
        text = text[:-1]            # the last line may lack its newline
    return text, (None if rejected else expect)
