"""The HVM device model: QEMU started from a DomainConfig and driven over QMP.

    spec = qemu_argv(cfg, domid=..., run_dir=..., accel=choose_accel()[0],
                     privileged=os.geteuid() == 0)
    dm = DeviceModel(spec, domid=..., on_event=callback).start()
    dm.status(); dm.pause(); dm.unpause(); dm.shutdown(); dm.destroy()
"""
from .accel import choose_accel
from .cmdline import (DeviceModelError as ConfigUnsupported, DeviceModelSpec,
                      disk_dev_number, qemu_argv, tap_ifname)
from .controller import (DeviceModel, DeviceModelError, DeviceModelGone,
                         DomainEvent)

__all__ = ["ConfigUnsupported", "DeviceModel", "DeviceModelError",
           "DeviceModelGone", "DeviceModelSpec", "DomainEvent", "choose_accel",
           "disk_dev_number", "qemu_argv", "tap_ifname"]
