"""sched_op sub-ops, shutdown reasons and their argument structs (public sched.h)."""
import struct

SCHEDOP_yield = 0
SCHEDOP_block = 1
SCHEDOP_shutdown = 2
SCHEDOP_poll = 3
SCHEDOP_remote_shutdown = 4
SCHEDOP_shutdown_code = 5
SCHEDOP_watchdog = 6
SCHEDOP_pin_override = 7

SHUTDOWN_poweroff = 0
SHUTDOWN_reboot = 1
SHUTDOWN_suspend = 2
SHUTDOWN_crash = 3
SHUTDOWN_watchdog = 4
SHUTDOWN_soft_reset = 5
SHUTDOWN_MAX = 5

SHUTDOWN_NAMES = {SHUTDOWN_poweroff: "poweroff", SHUTDOWN_reboot: "reboot",
                  SHUTDOWN_suspend: "suspend", SHUTDOWN_crash: "crash",
                  SHUTDOWN_watchdog: "watchdog", SHUTDOWN_soft_reset: "soft_reset"}

SCHED_SHUTDOWN = struct.Struct("<I")            # { unsigned int reason; }
# { XEN_GUEST_HANDLE(evtchn_port_t) ports; unsigned int nr_ports; uint64_t timeout; }
SCHED_POLL = struct.Struct("<QI4xQ")
SCHED_REMOTE_SHUTDOWN = struct.Struct("<H2xI")  # { domid_t domain_id; unsigned int reason; }
SCHED_WATCHDOG = struct.Struct("<II")           # { uint32_t id; uint32_t timeout; }

# Watchdog timers a domain may hold (SCHEDOP_watchdog ids 1..2).
NR_DOMAIN_WATCHDOG_TIMERS = 2

# Xen refuses polling more ports than this in one SCHEDOP_poll.
SCHED_POLL_MAX_PORTS = 128
