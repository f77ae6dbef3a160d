#!/bin/busybox sh
# /init of the project's busybox initramfs (built by guests/linux/build.py).
# Kernel command line keys it reads:
#   pyxen.disk=<name>   block device to read and report (sda, xvda, ...)
# Markers on the console (what the tests and benchmarks wait for):
#   PYXEN-INIT-OK, PYXEN-DISK <name> <bytes>, PYXEN-DISK-HEAD <text>,
#   PYXEN-NODISK <name>, PYXEN-ACPID-OK, PYXEN-SHELL
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "PYXEN-INIT-OK $(uname -r)"
# No serial or hvc console (a PVH guest with console_io only: earlyprintk=xen
# keep_bootcon): /dev/console is the dummy tty0, so the marker also goes
# into the kernel log, which the boot console carries.
active=$(cat /sys/class/tty/console/active 2>/dev/null)
if [ -z "$active" ] || [ "$active" = tty0 ]; then
    echo "PYXEN-INIT-OK $(uname -r)" > /dev/kmsg
fi

# Modules in dependency order (written by the builder from each .ko's
# depends= field).  Ones that do not apply here (xen-* under QEMU, PCI
# drivers in a PVH guest) fail with ENODEV: logged, not fatal.
while read -r m; do
    insmod "/lib/modules/$m.ko" 2>>/tmp/insmod.log
done < /lib/modules/load.order

# Power button: busybox acpid runs /etc/acpi/PWRF/00000080 on the ACPI
# button's input event (needs button + evdev).  The fixed-event counter in
# sysfs is polled as well, in case the event device is not there.
acpid -c /etc/acpi -l /tmp/acpid.log && echo "PYXEN-ACPID-OK"
(
    f=/sys/firmware/acpi/interrupts/ff_pwr_btn
    first=$(cat $f 2>/dev/null | awk '{print $1}')
    while [ -r $f ]; do
        sleep 1
        now=$(awk '{print $1}' $f)
        [ "$now" != "$first" ] && poweroff -f
    done
) &

disk=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in pyxen.disk=*) disk="${arg#pyxen.disk=}";; esac
done
if [ -n "$disk" ]; then
    # Disks appear asynchronously after the driver loads: wait for it.
    n=0
    while [ ! -e "/sys/block/$disk/size" ] && [ $n -lt 300 ]; do
        sleep 0.1; n=$((n + 1))
    done
    if [ -e "/sys/block/$disk/size" ]; then
        [ -e "/dev/$disk" ] || mknod "/dev/$disk" b \
            $(sed 's/:/ /' "/sys/block/$disk/dev")
        sectors=$(cat "/sys/block/$disk/size")
        echo "PYXEN-DISK $disk $((sectors * 512))"
        echo "PYXEN-DISK-HEAD $(head -c 64 /dev/$disk | head -n 1)"
    else
        echo "PYXEN-NODISK $disk"
    fi
fi

# As PID 1 we get busybox's halt/poweroff/reboot requests (SIGUSR1/USR2/
# TERM) and Ctrl-Alt-Del (SIGINT): what Linux's Xen driver runs on
# `xl shutdown`/`xl reboot` (orderly_poweroff -> /sbin/poweroff). The shell
# loop runs in the background so that `wait` lets the traps fire.
trap 'halt -f' USR1
trap 'poweroff -f' USR2
trap 'reboot -f' TERM INT
echo "PYXEN-SHELL"
(
    while true; do
        setsid cttyhack sh
        sleep 1
    done
) </dev/console >/dev/console 2>&1 &
while true; do
    wait
done
