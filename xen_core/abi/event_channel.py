"""event_channel_op sub-ops, argument structs and status values
(public event_channel.h), x86-64 layout; the VIRQ numbers (xen.h)."""
import struct

EVTCHNOP_bind_interdomain = 0
EVTCHNOP_bind_virq = 1
EVTCHNOP_bind_pirq = 2
EVTCHNOP_close = 3
EVTCHNOP_send = 4
EVTCHNOP_status = 5
EVTCHNOP_alloc_unbound = 6
EVTCHNOP_bind_ipi = 7
EVTCHNOP_bind_vcpu = 8
EVTCHNOP_unmask = 9
EVTCHNOP_reset = 10
EVTCHNOP_init_control = 11
EVTCHNOP_expand_array = 12
EVTCHNOP_set_priority = 13
EVTCHNOP_reset_cont = 14

# evtchn_status.status
EVTCHNSTAT_closed = 0
EVTCHNSTAT_unbound = 1
EVTCHNSTAT_interdomain = 2
EVTCHNSTAT_pirq = 3
EVTCHNSTAT_virq = 4
EVTCHNSTAT_ipi = 5

# VIRQs (xen.h). V = per vCPU, G = global (one binding, vCPU 0, movable).
VIRQ_TIMER = 0        # V
VIRQ_DEBUG = 1        # V
VIRQ_CONSOLE = 2      # G: emergency console input
VIRQ_DOM_EXC = 3      # G: a domain shut down or died (to the control domain)
VIRQ_TBUF = 4         # G
VIRQ_DEBUGGER = 6     # G
VIRQ_XENOPROF = 7     # V
VIRQ_CON_RING = 8     # G: the hypervisor console ring has new output
VIRQ_PCPU_STATE = 9   # G
VIRQ_MEM_EVENT = 10   # G
VIRQ_ARGO = 11        # G
VIRQ_ENOMEM = 12      # G
VIRQ_XENPMU = 13      # V
VIRQ_ARCH_0 = 16
NR_VIRQS = 24
PER_VCPU_VIRQS = frozenset({VIRQ_TIMER, VIRQ_DEBUG, VIRQ_XENOPROF, VIRQ_XENPMU})

# Argument structs (the op's union member; the compat form prefixes a u32 cmd).
ALLOC_UNBOUND = struct.Struct("<HHI")        # dom, remote_dom, OUT port
BIND_INTERDOMAIN = struct.Struct("<HxxII")   # remote_dom, remote_port, OUT local_port
BIND_VIRQ = struct.Struct("<III")            # virq, vcpu, OUT port
BIND_IPI = struct.Struct("<II")              # vcpu, OUT port
PORT = struct.Struct("<I")                   # close, send, unmask: { port }
# evtchn_status: dom u16, port u32 @4, OUT status u32 @8, OUT vcpu u32 @12,
# OUT union u @16 (unbound {dom}, interdomain {dom, port @20}, pirq, virq).
STATUS = struct.Struct("<HxxIII8s")
BIND_VCPU = struct.Struct("<II")             # port, vcpu
RESET = struct.Struct("<H")                  # dom
# evtchn_op (compat, hypercall 16): u32 cmd, then the union (largest member 24 bytes).
COMPAT_HEADER = struct.Struct("<I")
COMPAT_SIZE = 4 + 24
