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
