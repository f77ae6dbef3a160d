"""xl.cfg parsing speed: configs parsed per second, ours against references.

For a typical PV and a typical HVM config (examples/pv.cfg, examples/hvm.cfg)
it measures, in the same run:
  ours: grammar     toolstack.config.parse_text (lark LALR) -> settings
  ours: typed       parse_text + build() -> DomainConfig (xl's parse_config_data)
  ours: typed+json  the above + libxl JSON text, i.e. all of `xl create -n`
  ref:  libxlutil   Xen 4.17's C parser, xlu_cfg_init + xlu_cfg_readdata +
                    xlu_cfg_destroy through ctypes (when libxlutil is installed)
  ref:  json.loads  the same settings as a JSON document (C-accelerated json)
and prints each rate with its ratio to ours (grammar).
"""
import ctypes
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolstack.config import build, parse_text, to_json  # noqa: E402

LIBXLUTIL = "/usr/lib/x86_64-linux-gnu/libxlutil.so.4.17"


def one_run(fn, seconds):
    """Calls per second of fn() over one run of at least `seconds`."""
    n, batch = 0, 8
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed
        batch *= 2 if elapsed < seconds / 4 else 1


def rates(fns, seconds=0.25, repeats=7):
    """Best rate of each function over `repeats` rounds; the rounds take
    the functions in turn, so load from elsewhere hits them alike, and the
    best run is the least disturbed one (as timeit recommends)."""
    best = [0.0] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = max(best[i], one_run(fn, seconds))
    return best


def libxlutil_parser():
    try:
        lib = ctypes.CDLL(LIBXLUTIL)
    except OSError:
        return None
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    report = libc.fopen(b"/dev/null", b"w")
    lib.xlu_cfg_init.restype = ctypes.c_void_p
    lib.xlu_cfg_init.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.xlu_cfg_readdata.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.xlu_cfg_destroy.argtypes = [ctypes.c_void_p]

    def parse(data):
        cfg = lib.xlu_cfg_init(report, b"bench.cfg")
        rc = lib.xlu_cfg_readdata(cfg, data, len(data))
        lib.xlu_cfg_destroy(cfg)
        if rc:
            raise RuntimeError(f"libxlutil rejected the config: {rc}")
    return parse


def main():
    xlu = libxlutil_parser()
    rows = []
    for label, name in (("PV", "pv.cfg"), ("HVM", "hvm.cfg")):
        text = (ROOT / "examples" / name).read_text()
        source = str(ROOT / "examples" / name)
        data = text.encode()
        doc = json.dumps(parse_text(text, source).as_dict())
        fns = [("ours: grammar", lambda: parse_text(text, source)),
               ("ours: typed", lambda: build(parse_text(text, source), 8)),
               ("ours: typed+json", lambda: to_json(build(parse_text(text, source), 8)[0])),
               ("ref: libxlutil (C)", (lambda: xlu(data)) if xlu else None),
               ("ref: json.loads", lambda: json.loads(doc))]
        live = [(w, f) for w, f in fns if f is not None]
        got = dict(zip((w for w, _ in live), rates([f for _, f in live])))
        measured = [(w, got.get(w)) for w, _ in fns]
        ours = got["ours: grammar"]
        for what, r in measured:
            rows.append((f"{label} ({name}, {len(data)} B)", what, r,
                         None if r is None else ours / r))
    w = max(len(r[0]) for r in rows)
    print(f"{'config':<{w}}  {'parser':<20} {'configs/s':>12}  {'ours/this':>9}")
    for cfg, what, r, ratio in rows:
        if r is None:
            print(f"{cfg:<{w}}  {what:<20} {'n/a':>12}  {'':>9}  (libxlutil not installed)")
        else:
            print(f"{cfg:<{w}}  {what:<20} {r:>12,.0f}  {ratio:>9.3f}")


if __name__ == "__main__":
    main()
