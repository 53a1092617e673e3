# -*- test-case-name: tests.test_cli -*-
"""
The C{mqttx} command: administration tasks around the broker.

The broker itself runs under twistd (C{twistd -n mqttx --config PATH}); this
command does what an operator needs beside it:

  - C{mqttx version}: print the installed version;
  - C{mqttx check-config [--config PATH]}: check a configuration file the
    way the broker does at start, without starting anything;
  - C{mqttx store stats [--config PATH]}: count what the SQLite store holds;
  - C{mqttx store backup TARGET [--config PATH]}: copy the SQLite store,
    consistently, while the broker runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from twisted.python.filepath import FilePath

from mqttx import __version__
from mqttx.config import ConfigError, load_config
from mqttx.store import tools
from mqttx.store.schema import StoreError

__all__ = ["main"]

DEFAULT_CONFIG = "etc/mqttx.yaml"

_Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]


def _version(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out.write(f"mqttx {__version__}\n")
    return 0


def _check_config(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = FilePath(args.config)
    try:
        load_config(path)
    except ConfigError as e:
        err.write(f"{e}\n")
        return 1
    out.write(f"{path.path}: OK\n")
    return 0


def _database(args: argparse.Namespace) -> str:
    """
    The SQLite database file that C{args.config} configures.

    @raise ConfigError: if the file is not valid.
    @raise StoreError: if its backend is not C{sqlite}.
    """
    path = FilePath(args.config)
    persistence = load_config(path).persistence
    if persistence.backend != "sqlite":
        raise StoreError(
            f"{path.path}: persistence.backend is {persistence.backend!r}; "
            f"the store commands work on the sqlite backend"
        )
    return persistence.path


def _store_stats(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        stats = tools.stats(_database(args))
    except (ConfigError, StoreError) as e:
        err.write(f"{e}\n")
        return 1
    out.write("".join(f"{line}\n" for line in stats.lines()))
    return 0


def _store_backup(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        source = _database(args)
        size = tools.backup(source, args.target)
    except (ConfigError, StoreError) as e:
        err.write(f"{e}\n")
        return 1
    target = os.path.abspath(args.target)
    out.write(f"{target}: {size} bytes, copied from {os.path.abspath(source)}\n")
    return 0


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help=f"the YAML configuration file (default: {DEFAULT_CONFIG})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqttx",
        description="Administer the mqttx MQTT broker. Run the broker with: "
        "twistd -n mqttx --config PATH",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    version = commands.add_parser("version", help="print the mqttx version")
    version.set_defaults(handler=_version)

    check = commands.add_parser(
        "check-config",
        help="check a configuration file without starting the broker",
        description="Check a configuration file as the broker does at start. Prints "
        "'PATH: OK', or the problem on one line and exits with status 1.",
    )
    _add_config(check)
    check.set_defaults(handler=_check_config)

    store = commands.add_parser(
        "store",
        help="inspect or back up the SQLite store",
        description="Work on the SQLite database the configuration names, read-only, "
        "also while the broker runs. A relative persistence.path is taken from the "
        "working directory, as the broker does.",
    )
    store_commands = store.add_subparsers(title="commands", metavar="COMMAND", required=True)
    stats = store_commands.add_parser(
        "stats",
        help="count sessions, queued and retained messages, and the database size",
        description="Print what the store holds, one 'name: value' per line.",
    )
    _add_config(stats)
    stats.set_defaults(handler=_store_stats)
    backup = store_commands.add_parser(
        "backup",
        help="copy the database consistently, while the broker runs",
        description="Copy the database, as of one moment, to TARGET, which must not "
        "exist (its folder must). The copy is checked, and can replace the database "
        "while the broker is stopped.",
    )
    backup.add_argument("target", metavar="TARGET", help="the file to create")
    _add_config(backup)
    backup.set_defaults(handler=_store_backup)
    return parser


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """
    Run the C{mqttx} command.

    @param argv: the arguments after the program name; C{sys.argv[1:]} if
        L{None}.
    @param out: where results go; standard output if L{None}.
    @param err: where problems go; standard error if L{None}.
    @return: the exit status: 0 on success, 1 if the task failed.
    @raise SystemExit: with status 2 on a usage error (argparse's
        convention), after printing it.
    """
    args = _parser().parse_args(argv)
    handler: _Handler = args.handler
    return handler(args, out or sys.stdout, err or sys.stderr)
