"""ctypes binding to Debian's libxlutil (Xen 4.17), the reference parser.

Used by the differential tests; everything here returns None when the
library is absent so tests can skip cleanly.
"""
import ctypes
import ctypes.util
import os

_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libxlutil.so.4.17",
    "/usr/lib/x86_64-linux-gnu/libxlutil.so",
)

XLU_STRING, XLU_LIST = 0, 1


def load():
    for path in _CANDIDATES + tuple(filter(None, [ctypes.util.find_library("xlutil")])):
        if os.path.exists(path) or "/" not in path:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            return _declare(lib)
    return None


def _declare(lib):
    vp, cp, ip = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    lib.xlu_cfg_init.restype = vp
    lib.xlu_cfg_init.argtypes = [vp, cp]
    lib.xlu_cfg_readdata.argtypes = [vp, cp, ip]
    lib.xlu_cfg_destroy.argtypes = [vp]
    lib.xlu_cfg_get_list.argtypes = [vp, cp, ctypes.POINTER(vp), ctypes.POINTER(ip), ip]
    lib.xlu_cfg_get_string.argtypes = [vp, cp, ctypes.POINTER(cp), ip]
    lib.xlu_cfg_get_long.argtypes = [vp, cp, ctypes.POINTER(ctypes.c_long), ip]
    lib.xlu_cfg_get_listitem2.restype = vp
    lib.xlu_cfg_get_listitem2.argtypes = [vp, ip]
    lib.xlu_cfg_value_type.argtypes = [vp]
    lib.xlu_cfg_value_get_string.argtypes = [vp, vp, ctypes.POINTER(cp), ip]
    lib.xlu_cfg_value_get_list.argtypes = [vp, vp, ctypes.POINTER(vp), ip]
    libc = ctypes.CDLL(None)
    libc.tmpfile.restype = vp
    libc.fclose.argtypes = [vp]
    libc.fflush.argtypes = [vp]
    libc.rewind.argtypes = [vp]
    libc.fread.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, vp]
    libc.fread.restype = ctypes.c_size_t
    lib._libc = libc
    return lib


class Report:
    """A C FILE* for libxlutil's report output, readable afterwards."""

    def __init__(self, lib):
        self.libc = lib._libc
        self.fp = self.libc.tmpfile()

    def text(self):
        self.libc.fflush(self.fp)
        self.libc.rewind(self.fp)
        out = b""
        buf = ctypes.create_string_buffer(4096)
        while True:
            n = self.libc.fread(buf, 1, 4096, self.fp)
            if not n:
                break
            out += buf.raw[:n]
        return out.decode()

    def close(self):
        self.libc.fclose(self.fp)


def _value(lib, cfg, value):
    if lib.xlu_cfg_value_type(value) == XLU_STRING:
        s = ctypes.c_char_p()
        lib.xlu_cfg_value_get_string(cfg, value, ctypes.byref(s), 1)
        return s.value.decode("latin-1")
    lst = ctypes.c_void_p()
    lib.xlu_cfg_value_get_list(cfg, value, ctypes.byref(lst), 1)
    items, i = [], 0
    while True:
        item = lib.xlu_cfg_get_listitem2(lst, i)
        if not item:
            return items
        items.append(_value(lib, cfg, item))
        i += 1


def get_long(lib, data: bytes, name: str):
    """(errno, value) of xlu_cfg_get_long for `name` after parsing data."""
    rep = Report(lib)
    cfg = lib.xlu_cfg_init(rep.fp, b"test.cfg")
    try:
        rc = lib.xlu_cfg_readdata(cfg, data, len(data))
        assert rc == 0, rep.text()
        v = ctypes.c_long()
        rc = lib.xlu_cfg_get_long(cfg, name.encode(), ctypes.byref(v), 1)
        return rc, (v.value if rc == 0 else None)
    finally:
        lib.xlu_cfg_destroy(cfg)
        rep.close()


def parse(lib, data: bytes, names, source="test.cfg"):
    """Parse with libxlutil: (errno, report text, {name: value}) for `names`."""
    rep = Report(lib)
    cfg = lib.xlu_cfg_init(rep.fp, source.encode())
    try:
        rc = lib.xlu_cfg_readdata(cfg, data, len(data))
        values = {}
        if rc == 0:
            for name in names:
                lst, n = ctypes.c_void_p(), ctypes.c_int()
                if lib.xlu_cfg_get_list(cfg, name.encode(), ctypes.byref(lst),
                                        ctypes.byref(n), 1) == 0:
                    values[name] = [_value(lib, cfg, lib.xlu_cfg_get_listitem2(lst, i))
                                    for i in range(n.value)]
                    continue
                s = ctypes.c_char_p()
                if lib.xlu_cfg_get_string(cfg, name.encode(), ctypes.byref(s), 1) == 0:
                    values[name] = s.value.decode("latin-1")
        return rc, rep.text(), values
    finally:
        lib.xlu_cfg_destroy(cfg)
        rep.close()


class DeviceParsers:
    """xlu_disk_parse / xlu_vif_parse_rate, their results read back as JSON
    through libxenlight's own generator (libxl_device_*_to_json, ctx NULL)."""

    def __init__(self, lib):
        self.lib = lib
        self.xl = ctypes.CDLL("libxenlight.so.4.17")
        libc = lib._libc
        libc.free.argtypes = [ctypes.c_void_p]
        for name in ("libxl_device_disk_to_json", "libxl_device_nic_to_json"):
            getattr(self.xl, name).restype = ctypes.c_void_p
        self.report = Report(lib)
        self.cfg = lib.xlu_cfg_init(self.report.fp, b"test.cfg")

    def _json(self, fn, buf):
        p = fn(None, buf)
        try:
            return ctypes.string_at(p).decode() if p else None
        finally:
            self.lib._libc.free(p)

    def disk(self, spec: str):
        """(errno, libxl JSON of the disk or None)."""
        buf = ctypes.create_string_buffer(4096)      # > sizeof(libxl_device_disk)
        self.xl.libxl_device_disk_init(buf)
        specs = (ctypes.c_char_p * 1)(spec.encode())
        rc = self.lib.xlu_disk_parse(ctypes.c_void_p(self.cfg), 1, specs, buf)
        out = None if rc else self._json(self.xl.libxl_device_disk_to_json, buf)
        self.xl.libxl_device_disk_dispose(buf)
        return rc, out

    def rate(self, rate: str):
        """(errno, (bytes per interval, interval µs) or None)."""
        import json
        buf = ctypes.create_string_buffer(8192)      # > sizeof(libxl_device_nic)
        self.xl.libxl_device_nic_init(buf)
        rc = self.lib.xlu_vif_parse_rate(ctypes.c_void_p(self.cfg), rate.encode(), buf)
        doc = json.loads(self._json(self.xl.libxl_device_nic_to_json, buf))
        self.xl.libxl_device_nic_dispose(buf)
        if rc:
            return rc, None
        return rc, (doc.get("rate_bytes_per_interval", 0), doc.get("rate_interval_usecs", 0))


def device_parsers(lib):
    if lib is None:
        return None
    try:
        return DeviceParsers(lib)
    except OSError:
        return None
