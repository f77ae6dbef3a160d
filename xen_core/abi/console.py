"""The PV console ring page (Xen public io/console.h).

struct xencons_interface {
    char in[1024];          input from dom0 to the guest
    char out[2048];         output from the guest
    XENCONS_RING_IDX in_cons, in_prod;
    XENCONS_RING_IDX out_cons, out_prod;
};
Indexes are free-running u32s; a slot is `idx & (size - 1)`. The producer
writes data, then (after a write barrier) its prod index; the consumer
reads prod, the data, then advances cons.
"""
import struct

IN_SIZE = 1024
OUT_SIZE = 2048
IN_OFFSET = 0
OUT_OFFSET = 1024
IN_CONS = 3072
IN_PROD = 3076
OUT_CONS = 3080
OUT_PROD = 3084
IDX = struct.Struct("<I")

# libxl's default xenconsoled buffer limit for a domain (console/limit).
LIBXL_XENCONSOLE_LIMIT = 1048576
