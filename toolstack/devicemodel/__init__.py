"""The HVM device model: QEMU started from a DomainConfig and driven over QMP.

What xl (issue 6) calls, in the per-domain monitor process (xl create's
child that stays to watch the domain; create the DeviceModel AFTER any
fork/daemonize: QEMU is bound to the creating thread by PR_SET_PDEATHSIG):

    accel, why = choose_accel("auto")             # or "kvm" / "tcg"
    spec = qemu_argv(cfg, domid=domid, run_dir=f"{run}/qemu-dm-{domid}",
                     accel=accel, privileged=os.geteuid() == 0)
    for w in spec.warnings: print(w, file=sys.stderr)   # disks not emulated
    dm = DeviceModel(spec, domid=domid, on_event=queue.put).start(paused=p)

    dm.status()          # xl state letter r/b/p/s/c/d (xl list)
    dm.cpu_time()        # seconds, vCPU threads (xl list Time(s))
    dm.pause(); dm.unpause()
    dm.shutdown(wait=False)          # xl shutdown: one ACPI button press
    dm.shutdown(timeout=T)           # xl shutdown -w: retried, quit after T
    dm.reboot()                      # system_reset
    dm.destroy(); dm.close()         # xl destroy
    dm.serial_pty(0)     # /dev/pts/N: xl console -t serial; xenstore serial/0/tty
    dm.serial_log(0)     # everything the guest printed on COM1
    dm.pid               # xenstore image/device-model-pid

Events arrive on the controller's thread as DomainEvent(kind, guest,
reason, data): shutdown, reset, stop, resume, panicked (QMP), then exited
or crashed when QEMU ends.  The callback must not block or call back into
the same DeviceModel synchronously: hand the event to the monitor's loop.
on_poweroff/on_reboot/on_crash policy is the monitor's (restart = destroy +
a new domain with a new domid).

Other xl processes (xl pause/list run from a shell) use the second monitor:
    qmp_execute(spec.qmp_aux_path, "stop")
    xl_state(qmp_execute(aux, "query-status")["status"], pid)
    vcpu_cpu_time(pid)
"""
from .accel import choose_accel
from .cmdline import (DeviceModelError as ConfigUnsupported, DeviceModelSpec,
                      disk_dev_number, qemu_argv, tap_ifname)
from .controller import (DeviceModel, DeviceModelError, DeviceModelGone,
                         DomainEvent, qmp_execute, vcpu_cpu_time, xl_state)

__all__ = ["ConfigUnsupported", "DeviceModel", "DeviceModelError",
           "DeviceModelGone", "DeviceModelSpec", "DomainEvent", "choose_accel",
           "disk_dev_number", "qemu_argv", "qmp_execute", "tap_ifname",
           "vcpu_cpu_time", "xl_state"]
