"""Disk specifications, per xl-disk-configuration(5).

A longest-match scanner with the rules, order and actions of libxlutil's
flex lexer (libxlu_disk_l.l, Xen 4.17): `key=value` parameters, positional
`target,format,vdev,access`, `target=` swallowing the rest, and the
deprecated `[fmt:]target,vdev[:cdrom],access` prefixes.
"""
from __future__ import annotations

import re

from .errors import ConfigError
from .model import DeviceDisk

FORMATS = {"": "raw", "raw": "raw", "qcow": "qcow", "qcow2": "qcow2",
           "vhd": "vhd", "empty": "empty", "qed": "qed"}
BACKENDS = ("phy", "tap", "qdisk", "standalone")
SPECIFICATIONS = ("xen", "virtio")


class _Parse:
    def __init__(self, spec, source):
        self.spec = spec
        self.source = source
        self.disk = DeviceDisk(readwrite=1)
        self.had_depr_prefix = False
        self.access_set = False

    def err(self, erroneous, message):
        near = f": near `{erroneous}'" if erroneous is not None else ""
        raise ConfigError(f"config parsing error in disk specification: "
                          f"{message}{near} in `{self.spec}'", self.source)

    def save(self, what, attr, value):
        cur = getattr(self.disk, attr)
        if cur:             # overwriting an empty string is allowed
            self.err(value, f"{what} respecified")
        setattr(self.disk, attr, value)

    def set_enum(self, attr, value, shown):
        cur = getattr(self.disk, attr)
        if cur is not None and cur != value:
            self.err(shown, f"{attr} respecified")
        setattr(self.disk, attr, value)

    def set_format(self, s):
        if s not in FORMATS:
            self.err(s, "unknown value for format")
        self.set_enum("format", FORMATS[s], s)

    def set_access(self, s):
        if s in ("r", "ro"):
            self.disk.readwrite = 0
        elif s in ("rw", "w", ""):
            self.disk.readwrite = 1
        else:
            self.err(s, "unknown value for access")

    def vdev_and_devtype(self, s):
        if ":" not in s:
            return False
        vdev, devtype = s.rsplit(":", 1)
        self.save("vdev", "vdev", vdev)
        if devtype == "cdrom":
            self.disk.is_cdrom = 1
        elif devtype == "disk":
            self.disk.is_cdrom = 0
        else:
            self.err(devtype, "unknown deprecated type")
        return True

    def positional(self, s):
        d = self.disk
        if d.pdev_path is None:
            self.save("target", "pdev_path", s)
        elif not self.had_depr_prefix and d.format is None:
            if not d.pdev_path and self.vdev_and_devtype(s):
                d.format = "empty"
            else:
                self.set_format(s)
        elif d.vdev is None:
            if not self.vdev_and_devtype(s):
                self.save("vdev", "vdev", s)
        elif not self.access_set:
            self.access_set = True
            self.set_access(s)
        else:
            self.err(s, "too many positional parameters")


def _strip(text, delim):
    return text[:-1] if text.endswith(delim) else text


def _value(text):
    return _strip(text, ",").split("=", 1)[1]


def _defbool(attr, value):
    def act(p, t):
        setattr(p.disk, attr, value)
    return act


def _depr_script(p, t):
    p.had_depr_prefix = True
    p.save("script", "script", "block-" + _strip(t, ":"))


def _depr_format(p, t):
    p.had_depr_prefix = True
    p.set_format(_strip(t, ":"))


def _depr_ignore(p, t):
    p.had_depr_prefix = True


def _colo_port(p, t):
    v = _value(t)
    m = re.match(r"[ \t]*[+-]?\d+", v)
    port = int(m.group()) if m else 0
    if not port:
        p.err(v, "unknown value for colo_port")
    p.disk.colo_port = port


def _backendtype(p, t):
    v = _value(t)
    if v not in BACKENDS:
        p.err(v, "unknown value for backendtype")
    p.set_enum("backend", v, v)


def _specification(p, t):
    v = _value(t)
    if v not in SPECIFICATIONS:
        p.err(v, "unknown value for specification")
    p.set_enum("specification", v, v)


def _unknown_prefix(p, t):
    p.err(t, "unknown deprecated disk prefix")


def _set(attr, value):
    def act(p, t):
        setattr(p.disk, attr, value)
    return act


def _save(what, attr):
    def act(p, t):
        p.save(what, attr, _value(t))
    return act


# (head regex, trailing-context regex or None, action).  Flex picks the
# longest match, counting trailing context; ties go to the earlier rule.
_RULES = [
    (r"[ \t\n]+", r"(?:[^ \t\n].*)?", None),
    (r"format=[^,]*,?", None, lambda p, t: p.set_format(_value(t))),
    (r"cdrom,?", None, _set("is_cdrom", 1)),
    (r"devtype=cdrom,?", None, _set("is_cdrom", 1)),
    (r"devtype=disk,?", None, _set("is_cdrom", 0)),
    (r"devtype=[^,]*,?", None, lambda p, t: p.err(t, "unknown value for type")),
    (r"access=[^,]*,?", None, lambda p, t: p.set_access(_value(t))),
    (r"backend=[^,]*,?", None, _save("backend", "backend_domname")),
    (r"backendtype=[^,]*,?", None, _backendtype),
    (r"specification=[^,]*,?", None, _specification),
    (r"vdev=[^,]*,?", None, _save("vdev", "vdev")),
    (r"script=[^,]*,?", None, _save("script", "script")),
    (r"direct-io-safe,?", None, _set("direct_io_safe", True)),
    (r"discard,?", None, _defbool("discard_enable", True)),
    (r"no-discard,?", None, _defbool("discard_enable", False)),
    (r"colo,?", None, _defbool("colo_enable", True)),
    (r"no-colo,?", None, _defbool("colo_enable", False)),
    (r"colo-host=[^,]*,?", None, _save("colo-host", "colo_host")),
    (r"colo-port=[^,]*,?", None, _colo_port),
    (r"colo-export=[^,]*,?", None, _save("colo-export", "colo_export")),
    (r"active-disk=[^,]*,?", None, _save("active-disk", "active_disk")),
    (r"hidden-disk=[^,]*,?", None, _save("hidden-disk", "hidden_disk")),
    (r"target=.*", None, lambda p, t: p.save("target", "pdev_path", _value(t))),
    (r"[a-z][-a-z0-9]*=[^,],?", None, lambda p, t: p.err(t, "unknown parameter")),
    (r"(?:raw|qcow2?|vhd):", r".*", _depr_format),
    (r"(?:iscsi|e?nbd|drbd):", r".*", _depr_script),
    (r"tapdisk:", r".*", _depr_ignore),
    (r"tap2?:", r".*", _depr_ignore),
    (r"aio:", r".*", _depr_ignore),
    (r"ioemu:", r".*", _depr_ignore),
    (r"file:", r".*", _depr_ignore),
    (r"phy:", r".*", _depr_ignore),
    (r"[a-z][a-z0-9]*:", r"(?:[^a-z0-9].*)?", _unknown_prefix),
    (r"[^=,\n]*,|[^=,\n]+,?", None, lambda p, t: p.positional(_strip(t, ","))),
]
_COMPILED = [(re.compile(h), re.compile(c) if c is not None else None, a)
             for h, c, a in _RULES]


def _first_chars(head):
    """The characters a rule's match can start with, or None for "any".
    Only a speed-up: rules that cannot start at a character are not tried."""
    if head[0] in "abcdefghijklmnopqrstuvwxyz":
        return {head[0]}
    if head.startswith("(?:"):
        alts = head[3:head.index(")")].split("|")
        return {a[0] for a in alts} | {a[2] for a in alts if a[1] == "?"}
    return None


def _candidates():
    generic = [r for r, (h, _, _) in zip(_COMPILED, _RULES) if _first_chars(h) is None]
    table = {}
    for ch in map(chr, range(128)):
        table[ch] = [r for r, (h, _, _) in zip(_COMPILED, _RULES)
                     if (_first_chars(h) is None or ch in _first_chars(h))]
    return table, generic


_BY_FIRST, _GENERIC = _candidates()


def _scan(p: _Parse, spec: str):
    pos, n = 0, len(spec)
    while pos < n:
        best, best_len, best_head = None, 0, 0
        for head_re, ctx_re, action in _BY_FIRST.get(spec[pos], _GENERIC):
            m = head_re.match(spec, pos)
            if not m:
                continue
            head = m.end() - pos
            total = head
            if ctx_re is not None:
                c = ctx_re.match(spec, m.end())
                if not c:
                    continue
                total += c.end() - m.end()
            if total > best_len:
                best, best_len, best_head = action, total, head
        if best_len == 0 or best_head == 0:
            p.err(spec[pos:].split("\n", 1)[0], "bad disk syntax")
        if best is not None:
            best(p, spec[pos:pos + best_head])
        pos += best_head


def parse_disk(spec: str, source: str = "command line") -> DeviceDisk:
    """Parse one disk spec string into a DeviceDisk (xlu_disk_parse)."""
    p = _Parse(spec, source)
    _scan(p, spec)
    d = p.disk
    if d.format is None:
        d.format = "raw"
    if d.is_cdrom:
        d.removable = 1
        d.readwrite = 0
        if not d.pdev_path:
            d.format = "empty"
    if d.vdev is None:
        p.err(None, "no vdev specified")
    if not d.vdev:
        # libxlutil lets an empty vdev through to fail later in libxl.
        p.err(None, "empty vdev")
    if d.pdev_path is None and not d.removable:
        p.err(None, "no target specified (and device not removable)")
    return d
