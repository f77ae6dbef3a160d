"""Load xl.cfg text into settings, accepting exactly what libxlutil accepts.

Sans-I/O: `parse_text()` takes the text and a name for messages.  The result
is a `Config`: settings in file order, each a name, an operator, a value and
the position of its key.  Values are `Value`s: strings (quoted strings and
numbers alike; numbers stay text until read as one) or lists, which nest.
"""
from __future__ import annotations

import contextvars
import dataclasses
import pathlib
import re

import lark

from .errors import ConfigError

STRING, LIST = "string", "list"
OP_ASSIGN, OP_ADD = "=", "+="

# libxlutil warns that a file "looks like Python" when a lexical error starts
# at one of these characters (flex rule [+-.():] in libxlu_cfg_l.l).
_PYTHON_CHARS = set("+-.():")
PYTHON_HINT = ("the file looks like Python; arbitrary Python is no longer "
               "supported, see https://wiki.xen.org/wiki/PythonInXlConfig")

# Bison's names for the tokens, used in "unexpected X, expecting Y".
_TOKEN_NAMES = {
    "$END": "$end", "IDENT": "IDENT", "STRING": "STRING", "NUMBER": "NUMBER",
    "NEWLINE": "NEWLINE", "OP_ADD": "+=", "EQUAL": "'='", "SEMICOLON": "';'",
    "COMMA": "','", "LBRACKET": "'['", "RSQB": "']'",
}
_TOKEN_ORDER = list(_TOKEN_NAMES)


@dataclasses.dataclass(frozen=True, slots=True)
class Value:
    kind: str                   # STRING or LIST
    data: object                # str, or a tuple of Values
    line: int
    column: int
    quoted: bool = False        # a quoted string rather than a bare number

    def plain(self):
        """The value as Python str / nested lists."""
        if self.kind == STRING:
            return self.data
        return [v.plain() for v in self.data]


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    name: str
    op: str
    value: Value
    line: int
    column: int


@dataclasses.dataclass
class Config:
    source: str
    settings: list            # every Setting in file order
    _last: dict = dataclasses.field(default_factory=dict)

    def get(self, name):
        """The setting that counts (the last assignment), or None."""
        return self._last.get(name)

    def __contains__(self, name):
        return name in self._last

    def names(self):
        return list(self._last)

    def as_dict(self):
        return {n: s.value.plain() for n, s in self._last.items()}


def dequote(token: str):
    """Strip the quotes and apply libxlutil's escapes (xlu__cfgl_dequote).

    Returns (text, error); error is None or libxlutil's message.  Xen 4.17
    quirks kept on purpose: `\\x` escapes are always rejected, and an escape
    starting with an octal digit consumes the following decimal digits
    (two at least) without producing a character.
    """
    body = token[1:-1]
    if "\\" not in body:
        return body, None
    out = []
    i, n = 0, len(body)
    simple = {'"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b",
              "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
    while i < n:
        c = body[i]
        i += 1
        if c != "\\":
            out.append(c)
            continue
        nc = body[i]
        i += 1
        if nc in simple:
            out.append(simple[nc])
        elif nc == "x":
            return None, ("invalid digit after backslash hexnumerical "
                          "character escape in quoted string")
        elif "0" <= nc <= "7":
            digits = 0
            while digits < 3 and i + digits < n and body[i + digits].isdigit():
                digits += 1
            if digits < 2:
                return None, ("invalid digit after backslash octalnumerical "
                              "character escape in quoted string")
            i += digits
        else:
            return None, "invalid character after backlash in quoted string"
    return "".join(out), None


class _Builder(lark.Transformer):
    """Turns parse-tree nodes into Values and Settings as the parser reduces."""

    def string(self, items):
        tok = items[0]
        text, err = dequote(tok.value)
        if err:
            raise ConfigError(f"config parsing error near `{tok.value}': {err}",
                              _SOURCE.get(), tok.line, tok.column)
        return Value(STRING, text, tok.line, tok.column, True)

    def number(self, items):
        tok = items[0]
        return Value(STRING, tok.value, tok.line, tok.column)

    def list(self, items):
        tok = items[0]
        return Value(LIST, tuple(v for v in items if type(v) is Value),
                     tok.line, tok.column)

    def assign(self, items):
        key, value = items
        return Setting(key.value, OP_ASSIGN, value, key.line, key.column)

    def add(self, items):
        key, _, value = items
        return Setting(key.value, OP_ADD, value, key.line, key.column)

    def start(self, items):
        return [s for s in items if type(s) is Setting]


class _LexicalError(Exception):
    def __init__(self, pos, line, column):
        self.pos, self.line, self.column = pos, line, column


_GRAMMAR = (pathlib.Path(__file__).with_name("grammar.lark")).read_text()
_SOURCE = contextvars.ContextVar("source", default="<config>")


def _master_regex():
    """One alternation of the grammar's own terminals (grammar.lark stays the
    single definition of the lexical rules).  Their first characters are
    disjoint, so first match is longest match, as with flex here."""
    basic = lark.Lark(_GRAMMAR, parser="lalr", lexer="basic")
    return re.compile("|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})"
                               for t in basic.terminals))


class _Lexer(lark.lexer.Lexer):
    """A single-regex scanner over the grammar's terminals: lark's basic
    lexer does the same job about a third slower."""

    master = _master_regex()

    def __init__(self, lexer_conf):
        pass

    def lex(self, data):
        match = self.master.match
        pos, line, line_start, n = 0, 1, 0, len(data)
        while pos < n:
            m = match(data, pos)
            if m is None:
                raise _LexicalError(pos, line, pos - line_start + 1)
            kind, end = m.lastgroup, m.end()
            if kind != "WS":
                yield lark.Token(kind, m.group(), pos, line, pos - line_start + 1)
                if kind == "NEWLINE":
                    line, line_start = line + 1, end
            pos = end


_PARSER = lark.Lark(_GRAMMAR, parser="lalr", lexer=_Lexer, transformer=_Builder(),
                    propagate_positions=False, maybe_placeholders=False)


def _expected(names):
    names = sorted({n for n in names if n in _TOKEN_NAMES}, key=_TOKEN_ORDER.index)
    if not names or len(names) > 4:     # bison stops listing past four
        return ""
    return ", expecting " + " or ".join(_TOKEN_NAMES[n] for n in names)


def _syntax_error(source, err: lark.exceptions.UnexpectedToken):
    tok = err.token
    if tok.type == "$END":
        near, what = "end of file", "$end"
    elif tok.type == "NEWLINE":
        near, what = "<newline>", "NEWLINE"
    else:
        near, what = f"`{tok.value}'", _TOKEN_NAMES.get(tok.type, tok.type)
    line = getattr(tok, "line", None) or err.line
    col = getattr(tok, "column", None) or err.column
    if line in (None, -1):
        line, col = err.line, err.column
    return ConfigError(f"config parsing error near {near}: syntax error, "
                       f"unexpected {what}{_expected(err.expected)}",
                       source, line if line != -1 else None,
                       col if col != -1 else None)


def _lexical_error(source, text, err: _LexicalError):
    # Name the run of non-blank characters from the offending one, as
    # libxlutil's <lexerr> state does.
    pos = err.pos
    end = pos
    while end < len(text) and text[end] not in " \t\n":
        end += 1
    near = text[pos:end]
    msg = f"config parsing error near `{near}': lexical error"
    if text[pos] in _PYTHON_CHARS:
        msg += f" ({PYTHON_HINT})"
    return ConfigError(msg, source, err.line, err.column)


def _concat(source, prev: Value, new: Value, setting: Setting) -> Value:
    """`key += value` (xlu__cfg_concat_vals)."""
    if prev.kind != new.kind:
        raise ConfigError("config parsing error: can't add [list] to "
                          "\"string\" or vice versa"
                          f" (parameter `{setting.name}')",
                          source, setting.line, setting.column)
    if new.kind == STRING:
        return Value(STRING, prev.data + new.data, new.line, new.column, new.quoted)
    return Value(LIST, prev.data + new.data, new.line, new.column)


def parse_text(text: str, source: str = "<config>") -> Config:
    """Parse xl.cfg text; raise ConfigError with FILE:LINE:COL on any error."""
    if "\x00" in text:
        raise ConfigError("config parsing error: NUL character in file", source)
    token = _SOURCE.set(source)
    try:
        settings = _PARSER.parse(text)
    except ConfigError:
        raise
    except _LexicalError as e:
        raise _lexical_error(source, text, e) from None
    except lark.exceptions.UnexpectedToken as e:
        raise _syntax_error(source, e) from None
    except lark.exceptions.UnexpectedEOF as e:
        raise ConfigError("config parsing error near end of file: syntax "
                          "error, unexpected $end" + _expected(e.expected),
                          source) from None
    except lark.exceptions.VisitError as e:     # pragma: no cover - defensive
        if isinstance(e.orig_exc, ConfigError):
            raise e.orig_exc from None
        raise
    finally:
        _SOURCE.reset(token)
    cfg = Config(source, [])
    last = cfg._last
    for s in settings:
        if s.op == OP_ADD and s.name in last:
            s = Setting(s.name, s.op, _concat(source, last[s.name].value, s.value, s),
                        s.line, s.column)
        cfg.settings.append(s)
        last[s.name] = s
    return cfg


def parse_file(path) -> Config:
    """Read and parse a file; errors name the path as given."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"unable to open configuration file: {e.strerror}",
                          path) from None
    return parse_text(data.decode("utf-8", "surrogateescape"), path)
