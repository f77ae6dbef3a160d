"""`xl`, the command-line front end of the toolstack.

`main` is the click group; each subcommand is a small function here or in
a module of its own registered with `main.add_command()` (later: list,
destroy, console, ...).  Every failure is one line on stderr and a non-zero
exit status, never a traceback.
"""
from __future__ import annotations

import sys

import click

from .config import ConfigError, load, to_json


class XlError(click.ClickException):
    """A one-line failure; click prints it and exits 1."""

    def format_message(self):
        return self.message

    def show(self, file=None):
        click.echo(self.format_message(), err=True)


CONTEXT = {"help_option_names": ["-h", "--help"]}


class XlGroup(click.Group):
    """Turns any unexpected exception into one line and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:      # a bug: still one line, never a traceback
            raise XlError(f"xl: internal error: {type(e).__name__}: {e}") from None


@click.group(cls=XlGroup, context_settings=CONTEXT)
@click.option("-v", "verbose", count=True, help="Verbose output (repeatable).")
@click.option("-N", "dry_run", is_flag=True,
              help="Dry run: show what would be done, change nothing.")
@click.option("-f", "force", is_flag=True, help="Force execution.")
@click.pass_context
def main(ctx, verbose, dry_run, force):
    """Xen management tool, after Xen's xl(1)."""
    ctx.ensure_object(dict)
    ctx.obj.update(verbose=verbose, dry_run=dry_run, force=force)


def _split_args(args, config_file):
    """xl create's operands: an optional file, then `key=value` overrides."""
    args = list(args)
    if config_file is None and args and "=" not in args[0]:
        config_file = args.pop(0)
    for a in args:
        if "=" not in a:
            raise XlError(f"xl create: `{a}' is not a key=value override")
    if config_file is None:
        raise XlError("xl create: no config file given")
    return config_file, args


@main.command(context_settings=CONTEXT)
@click.option("-n", "--dry-run", "dry_run", is_flag=True,
              help="Dry run: print the domain configuration as JSON and stop.")
@click.option("-f", "config_file", metavar="FILE", help="Config file to use.")
@click.option("-p", "paused", is_flag=True, help="Leave the domain paused after creation.")
@click.option("-c", "console", is_flag=True, help="Attach to the console after creation.")
@click.option("-q", "quiet", is_flag=True, help="Quiet.")
@click.option("-V", "vncviewer", is_flag=True, help="Connect to the VNC display.")
@click.option("-A", "vncviewer_autopass", is_flag=True, help="Pass the VNC password.")
@click.option("-e", "no_wait", is_flag=True, help="Do not wait in the background.")
@click.option("-F", "foreground", is_flag=True, help="Run in the foreground.")
@click.option("-d", "debug", is_flag=True, help="Debug output.")
@click.argument("args", nargs=-1)
@click.pass_context
def create(ctx, dry_run, config_file, paused, console, quiet, vncviewer,
           vncviewer_autopass, no_wait, foreground, debug, args):
    """Create a domain from CONFIG_FILE [KEY=VALUE ...]."""
    dry_run = dry_run or ctx.obj.get("dry_run", False)
    config_file, overrides = _split_args(args, config_file)
    if not quiet:
        click.echo(f"Parsing config from {config_file}", err=True)
    try:
        d_config, warnings = load(config_file, overrides)
    except ConfigError as e:
        raise XlError(str(e)) from None
    for w in warnings:
        click.echo(w, err=True)
    if dry_run:
        click.echo(to_json(d_config))
        return
    from .xl_create import create_and_run
    create_and_run(d_config, paused=paused, console=console, foreground=foreground)


from .xl_domain import COMMANDS  # noqa: E402  (the group must exist first)

for _cmd in COMMANDS:
    main.add_command(_cmd)
from .xl_pvdevices import COMMANDS as PV_DEVICE_COMMANDS  # noqa: E402

for _cmd in PV_DEVICE_COMMANDS:
    main.add_command(_cmd)


def run(argv=None):
    """Entry point usable from Python: returns the exit status."""
    try:
        main.main(args=argv, prog_name="xl", standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


if __name__ == "__main__":      # pragma: no cover
    sys.exit(run())
