"""Domain builders: kernel image in, guest memory contents and first vCPU
state out (pure: no guest memory, no hypervisor)."""
from .elf import BuildError
from .pvh import PvhImage, build_pvh

__all__ = ["BuildError", "PvhImage", "build_pvh"]
