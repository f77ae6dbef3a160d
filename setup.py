"""Only here for the cffi extensions (the C run loops of the accelerators).

Each build script is listed once it exists, so a tree without one still installs.
"""
import os

from setuptools import setup

CFFI_BUILDERS = [
    "xen_core/accel/build_emu.py:ffibuilder",
    "xen_core/accel/build_kvm.py:ffibuilder",
]

here = os.path.dirname(os.path.abspath(__file__))
setup(
    cffi_modules=[m for m in CFFI_BUILDERS
                  if os.path.exists(os.path.join(here, m.split(":")[0]))],
)
