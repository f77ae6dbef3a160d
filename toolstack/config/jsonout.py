"""libxl's domain-config JSON, byte for byte as `xl -N create` prints it.

Walks the `model` dataclasses (the one field list) with the rules of libxl's
generated *_gen_json (gentypes.py): a field equal to its default is left
out, nested structs are always written, the keyed union is written as
"type.<kind>".  Layout is yajl's beautify mode: four-space indents,
`"key": value`, and an empty map as "{", a blank line, then "}".
"""
from __future__ import annotations

import dataclasses

_INDENT = "    "


def _string(s: str) -> str:
    # yajl_string_encode: escape quote, backslash and control characters;
    # solidus and non-ASCII pass through.
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif o < 0x20:
            out.append("\\u%04X" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _pairs(obj):
    """(key, rendered-json-tree) for the fields of one dataclass instance."""
    for f in dataclasses.fields(obj):
        meta = f.metadata
        if not meta.get("json", True):
            continue
        value = getattr(obj, f.name)
        kind = meta["kind"]
        if kind == "struct":
            yield f.name, ("map", list(_pairs(value)))
        elif kind == "keyed_union":
            if value is not None:
                key = getattr(obj, meta["name"])
                yield f"{meta['name']}.{key}", ("map", list(_pairs(value)))
        elif kind in ("list", "structs", "bitmaps", "ints"):
            if value:
                yield f.name, _array(value, kind)
        elif kind == "bitmap":
            if value:               # an all-clear bitmap is not written
                yield f.name, _scalar(value, kind)
        else:
            if value == f.default:
                continue
            yield f.name, _scalar(value, kind)


def _scalar(value, kind):
    if kind == "defbool":
        return ("raw", _string("True" if value else "False"))
    if kind == "bool":
        return ("raw", "true" if value else "false")
    if kind == "bitmap":
        return ("array", [("raw", str(b)) for b in value])
    if isinstance(value, bool):
        return ("raw", "true" if value else "false")
    if isinstance(value, int):
        return ("raw", str(value))
    return ("raw", _string(value))


def _array(values, kind):
    if kind == "structs":
        return ("array", [("map", list(_pairs(v))) for v in values])
    if kind == "bitmaps":
        return ("array", [("array", [("raw", str(b)) for b in v]) for v in values])
    if kind == "ints":
        return ("array", [("raw", str(v)) for v in values])
    return ("array", [("raw", _string(v)) for v in values])


def _render(node, depth, out):
    kind, body = node
    if kind == "raw":
        out.append(body)
        return
    pad = _INDENT * (depth + 1)
    close = _INDENT * depth
    if kind == "map":
        out.append("{\n")
        for i, (k, v) in enumerate(body):
            out.append(f"{pad}{_string(k)}: ")
            _render(v, depth + 1, out)
            out.append(",\n" if i + 1 < len(body) else "\n")
        if not body:
            out.append("\n")
        out.append(close + "}")
    else:
        out.append("[\n")
        for i, v in enumerate(body):
            out.append(pad)
            _render(v, depth + 1, out)
            out.append(",\n" if i + 1 < len(body) else "\n")
        if not body:
            out.append("\n")
        out.append(close + "]")


def to_json(obj) -> str:
    """The JSON text for a model dataclass (no trailing newline)."""
    out = []
    _render(("map", list(_pairs(obj))), 0, out)
    return "".join(out)
