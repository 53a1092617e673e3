# -*- test-case-name: tests.test_cli -*-
"""
The C{mqttx} command: administration tasks around the broker.

The broker itself runs under twistd (C{twistd -n mqttx --config PATH}); this
command does what an operator needs beside it:

  - C{mqttx version}: print the installed version;
  - C{mqttx check-config [--config PATH]}: check a configuration file the
    way the broker does at start, without starting anything.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from twisted.python.filepath import FilePath

from mqttx import __version__
from mqttx.config import ConfigError, load_config

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
    check.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help=f"the YAML configuration file (default: {DEFAULT_CONFIG})",
    )
    check.set_defaults(handler=_check_config)
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
