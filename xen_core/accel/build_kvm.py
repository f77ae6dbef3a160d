"""cffi (API mode) builder for the KVM engine's C side: `xen_core.accel._kvm`.

Needs only the toolchain's Linux headers (`linux/kvm.h`, Debian's
linux-libc-dev); setup.py runs it at install time.
"""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))


def _cdef() -> str:
    with open(os.path.join(HERE, "kvm.h")) as f:
        text = f.read()
    return text.split("/* cdef-begin */", 1)[1].split("/* cdef-end */", 1)[0]


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
# The Python exit handler, called from the C run loop (kvm.c) for each exit.
ffibuilder.cdef('extern "Python+C" int xk_py_exit(void *handle, struct xk_exit *ex);')
ffibuilder.set_source(
    "xen_core.accel._kvm",
    '#include "kvm.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, "kvm.c"))],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
    libraries=["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
