"""xl block-attach/-detach/-list and network-attach/-detach/-list."""
from __future__ import annotations

import click

from .config import ConfigError
from .config.disk import parse_disk
from .config.vif import parse_nic
from .pvdevices import (DeviceError, disk_add, find_devid, list_devices, nic_add,
                        remove)
from .xl_domain import CONTEXT, _xl_error, find_domain, open_session


def _guarded(fn):
    try:
        return fn()
    except (DeviceError, ConfigError) as e:
        raise _xl_error()(f"xl: {e}") from None


@click.command("block-attach", context_settings=CONTEXT)
@click.argument("domain")
@click.argument("spec", nargs=-1, required=True)
def block_attach(domain, spec):
    """Create a new virtual block device: DOMAIN DISK-SPEC-COMPONENT(S)..."""
    with open_session() as sess:
        domid = find_domain(sess, domain)
        _guarded(lambda: disk_add(sess.xs, domid, parse_disk(",".join(spec))))


@click.command("block-detach", context_settings=CONTEXT)
@click.option("-f", "force", is_flag=True, help="Do not wait for the guest to close it.")
@click.argument("domain")
@click.argument("devid")
def block_detach(force, domain, devid):
    """Destroy a domain's virtual block device (DEVID: number or vdev)."""
    with open_session() as sess:
        domid = find_domain(sess, domain)
        n = _guarded(lambda: find_devid(sess.xs, domid, "vbd", devid))
        if not _guarded(lambda: remove(sess.xs, domid, "vbd", n, force=force)):
            click.echo(f"xl: block-detach: {devid} did not close in time; removed", err=True)


@click.command("block-list", context_settings=CONTEXT)
@click.argument("domains", nargs=-1, required=True)
def block_list(domains):
    """List virtual block devices for a domain."""
    with open_session() as sess:
        click.echo(f"{'Vdev':<5} {'BE':<3} {'handle':<6} {'state':<5} {'evt-ch':<6} "
                   f"{'ring-ref':<8} {'BE-path':<30}")
        for dom in domains:
            domid = find_domain(sess, dom)
            for r in list_devices(sess.xs, domid, "vbd"):
                click.echo(f"{r['devid']:<5} {r['backend_id']:<3} {r['frontend_id']:<6} "
                           f"{r['state']:<5} {r['evtch']:<6} {r['rref']:<8} "
                           f"{r['backend']:<30}")


@click.command("network-attach", context_settings=CONTEXT)
@click.argument("domain")
@click.argument("spec", nargs=-1)
def network_attach(domain, spec):
    """Create a new virtual network device: DOMAIN [type=..] [mac=..] [bridge=..] ..."""
    with open_session() as sess:
        domid = find_domain(sess, domain)
        _guarded(lambda: nic_add(sess.xs, domid, parse_nic(",".join(spec), -1)))


@click.command("network-detach", context_settings=CONTEXT)
@click.option("-f", "force", is_flag=True, help="Do not wait for the guest to close it.")
@click.argument("domain")
@click.argument("devid")
def network_detach(force, domain, devid):
    """Destroy a domain's virtual network device (DEVID: number or MAC)."""
    with open_session() as sess:
        domid = find_domain(sess, domain)
        n = _guarded(lambda: find_devid(sess.xs, domid, "vif", devid))
        if not _guarded(lambda: remove(sess.xs, domid, "vif", n, force=force)):
            click.echo(f"xl: network-detach: {devid} did not close in time; removed", err=True)


@click.command("network-list", context_settings=CONTEXT)
@click.argument("domains", nargs=-1, required=True)
def network_list(domains):
    """List virtual network interfaces for a domain."""
    with open_session() as sess:
        click.echo(f"{'Idx':<3} {'BE':<2} {'Mac Addr.':<17} {'handle':<6} {'state':<5} "
                   f"{'evt-ch':<6} {'tx-':>5}/{'rx-ring-ref':<5} {'BE-path':<30}")
        for dom in domains:
            domid = find_domain(sess, dom)
            for r in list_devices(sess.xs, domid, "vif"):
                click.echo(f"{r['devid']:<3} {r['backend_id']:<2} {r['mac']:<17} "
                           f"{r['devid']:<6} {r['state']:<5} {r['evtch']:<6} "
                           f"{r['rref_tx']:>5}/{r['rref_rx']:<11} {r['backend']:<30}")


COMMANDS = [block_attach, block_detach, block_list, network_attach, network_detach,
            network_list]
