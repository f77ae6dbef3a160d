"""Guest-physical layout of PVH/HVM domains, as Xen's toolstack lays it out.

Special pages sit just below X86_HVM_END_SPECIAL_REGION (pfn 0xff000), eight
of them, indexed as libxc's SPECIALPAGE_* numbers; the memory map marks the
region reserved.
"""

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

X86_HVM_END_SPECIAL_REGION = 0xFF000  # pfn
X86_HVM_NR_SPECIAL_PAGES = 8

SPECIALPAGE_PAGING = 0
SPECIALPAGE_ACCESS = 1
SPECIALPAGE_SHARING = 2
SPECIALPAGE_BUFIOREQ = 3
SPECIALPAGE_XENSTORE = 4
SPECIALPAGE_IOREQ = 5
SPECIALPAGE_IDENT_PT = 6
SPECIALPAGE_CONSOLE = 7


def special_pfn(index: int) -> int:
    return X86_HVM_END_SPECIAL_REGION - X86_HVM_NR_SPECIAL_PAGES + index


SPECIAL_REGION_START = special_pfn(0) << PAGE_SHIFT     # 0xfeff8000
SPECIAL_REGION_END = X86_HVM_END_SPECIAL_REGION << PAGE_SHIFT  # 0xff000000

# RAM is one block from gpa 0 below this; larger guests are refused for now
# (a high-memory block above 4 GiB would lift it).
LOWMEM_LIMIT = 0xF0000000
