"""The one exception the engine raises; its name is the xsd error string."""

from xen_core.abi.xs_wire import XSD_ERRORS


class XsError(Exception):
    """A failed xenstore operation, named as in xsd_errors[] (e.g. ENOENT)."""

    __slots__ = ("name",)

    def __init__(self, name: str, detail: str = ""):
        if name not in XSD_ERRORS:
            raise ValueError(f"not an xsd error name: {name}")
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name
