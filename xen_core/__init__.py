"""The hypervisor core (`xen-core`).

    abi/            Xen's public ABI in Python (numbers, layouts) + privif wire format
    accel/          vCPU engines (KVM, software CPU) behind accel/base.py
    memory.py       one memfd per domain, the p2m, guest copies and the page walk
    domain.py       a domain's life cycle, shared info, hypercall page, console
    vcpu.py         a vCPU's thread, run state, blocking, vcpu_info/pvclock
    time.py         host TSC, its rate, the pvclock scale; timers.py: timer thread
    hypercalls/     one module per hypercall family, dispatch in __init__
    hypervisor.py   all domains, dom0 subscriptions (VIRQ_DOM_EXC, console)
    daemon.py       the privileged socket served to dom0

Where later layers plug in:
    hypercalls.register(nr, handler)     a hypercall family (event_channel_op, ...)
    daemon.register_op(name, handler)    a dom0 operation (evtchn_*, gnttab_*)
    Hypervisor.virq_hook(d, vcpu, virq)  VIRQ delivery (the timer raises VIRQ_TIMER)
    Hypervisor.upcall_hook(d, vcpu)      inject the callback vector for a pending event
    Hypervisor.add_to_physmap_hook(...)  XENMAPSPACE_grant_table and other spaces
    VCPU.kick()                          wake a vCPU blocked in SCHEDOP_block/poll or hlt
"""
