#!/bin/sh
# Run by test_net_guest.py inside `unshare -n`: a dom0 whose xen-backendd may
# build Linux bridges (this namespace's only), a net-test guest on xenbr9,
# and the host side pinging it through the bridge and the TAP vif<domid>.0.
set -e
KERNEL=$1
ip link set lo up
python3=${PYTHON:-python3}
$python3 -m toolstack.xl create examples/net-test.cfg "kernel=\"$KERNEL\"" 'name="net-h"' \
    'cmdline="ip=10.9.0.1"' "vif=['mac=00:16:3e:00:09:01, bridge=xenbr9']"
i=0
until grep -q "net-test: eth0" "$XEN_RUN_DIR/console/guest-net-h.log" 2>/dev/null; do
    i=$((i+1)); [ $i -lt 3000 ] || { echo "guest never came up"; exit 1; }; sleep 0.1
done
ip -o link show master xenbr9
ip addr add 10.9.0.254/24 dev xenbr9
$python3 -m tests.pv_drivers.icmp_ping 10.9.0.1 3
$python3 -m toolstack.xl destroy net-h
echo NETNS-PING-OK
