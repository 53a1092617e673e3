# -*- test-case-name: tests.test_cli -*-
"""
The C{mqttx} command: administration tasks around the broker.

The broker itself runs under twistd (C{twistd -n mqttx --config PATH}); this
command does what an operator needs beside it:

  - C{mqttx version}: print the installed version;
  - C{mqttx check-config [--config PATH]}: check a configuration file the
    way the broker does at start (TLS listeners' certificates and keys
    included), without starting anything;
  - C{mqttx store stats [--config PATH]}: count what the SQLite store holds;
  - C{mqttx store backup TARGET [--config PATH]}: copy the SQLite store,
    consistently, while the broker runs;
  - C{mqttx passwd [-c] [-b] FILE USER [PASSWORD]}, C{mqttx passwd -D FILE
    USER}, C{mqttx passwd -U FILE}: manage the password file (see
    L{mqttx.auth.passwords}).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from twisted.python.filepath import FilePath

from mqttx import __version__
from mqttx.auth.passwords import (
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    PasswordFileError,
    check_user_name,
    format_line,
    hash_password,
    parse_hash,
    parse_password_file,
    write_password_file,
)
from mqttx.config import ConfigError, load_config
from mqttx.store import tools
from mqttx.store.schema import StoreError
from mqttx.transports.tls import TLSSetupError, load_options

__all__ = ["main"]

DEFAULT_CONFIG = "etc/mqttx.yaml"

_Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]


def _version(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out.write(f"mqttx {__version__}\n")
    return 0


def _check_config(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = FilePath(args.config)
    try:
        config = load_config(path)
    except ConfigError as e:
        err.write(f"{e}\n")
        return 1
    for listener in config.listeners:
        if listener.tls is not None:
            # Certificates and keys, as the broker loads them at start.
            try:
                load_options(listener.tls, listener.name)
            except TLSSetupError as e:
                err.write(f"{path.path}: {e}\n")
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


class _PasswdError(Exception):
    """A C{mqttx passwd} task that cannot be done; the message says why."""


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise _PasswdError(f"{path}: cannot read the password file: {reason}") from None


def _ask_password(user: str) -> str:
    first = getpass.getpass(f"Password for {user}: ")
    if getpass.getpass("Reenter password: ") != first:
        raise _PasswdError("the passwords do not match; nothing changed")
    return first


def _passwd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        message = _passwd_task(args)
    except (_PasswdError, PasswordFileError) as e:
        err.write(f"mqttx passwd: {e}\n")
        return 1
    out.write(f"{message}\n")
    return 0


def _passwd_task(args: argparse.Namespace) -> str:
    """Do what C{args} ask; return what was done, for the user."""
    path: str = args.file
    user: str | None = args.user
    iterations: int = args.iterations
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise _PasswdError(f"--iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    modes = [
        flag for flag, on in (("-c", args.create), ("-D", args.delete), ("-U", args.upgrade)) if on
    ]
    if len(modes) > 1:
        raise _PasswdError(f"{' and '.join(modes)} cannot be combined")
    if args.upgrade:
        if user is not None or args.batch:
            raise _PasswdError("-U takes only the password file")
        return _hash_plain_file(path, iterations)
    if user is None:
        raise _PasswdError("a user name is required")
    try:
        check_user_name(user)
    except ValueError as e:
        raise _PasswdError(str(e)) from None
    if args.delete:
        if args.batch or args.password is not None:
            raise _PasswdError("-D takes the password file and a user name")
        lines = _read_lines(path)
        parse_password_file(lines, path)
        kept = [
            line
            for line in lines
            if line.partition(":")[0] != user or line.lstrip().startswith("#")
        ]
        if len(kept) == len(lines):
            raise _PasswdError(f"{path}: no user {user!r}")
        write_password_file(path, kept)
        return f"{path}: deleted user {user!r}"
    if args.batch:
        if args.password is None:
            raise _PasswdError("-b needs the password after the user name")
        password = args.password
    else:
        if args.password is not None:
            raise _PasswdError("a password on the command line needs -b")
        password = _ask_password(user)
    if not password:
        raise _PasswdError("the password is empty; nothing changed")
    lines = [] if args.create else _read_lines(path)
    parse_password_file(lines, path)
    entry = format_line(user, hash_password(password, iterations))
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("#") and line.partition(":")[0] == user:
            lines[index] = entry
            verb = "updated the password of"
            break
    else:
        lines.append(entry)
        verb = "added"
    write_password_file(path, lines)
    return f"{path}: {verb} user {user!r}"


def _hash_plain_file(path: str, iterations: int) -> str:
    """Hash, in place, every C{user:password} line of a file."""
    lines = _read_lines(path)
    hashed = 0
    seen: set[str] = set()
    for index, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, colon, rest = line.partition(":")
        try:
            if not colon:
                raise ValueError("expected NAME:PASSWORD")
            check_user_name(user)
            if user in seen:
                raise ValueError(f"user {user!r} appears twice")
        except ValueError as e:
            raise _PasswdError(f"{path}, line {index + 1}: {e}") from None
        seen.add(user)
        if rest.startswith("$"):
            try:
                parse_hash(rest)
                continue  # Hashed already.
            except ValueError:
                pass  # A plain password that starts with "$".
        if not rest:
            raise _PasswdError(f"{path}, line {index + 1}: the password is empty")
        lines[index] = format_line(user, hash_password(rest, iterations))
        hashed += 1
    write_password_file(path, lines)
    return f"{path}: hashed {hashed} password{'s' if hashed != 1 else ''}"


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

    passwd = commands.add_parser(
        "passwd",
        help="manage the password file",
        description="Add a user to the password file (or change their password), "
        "delete one, or hash a file of plain NAME:PASSWORD lines. The password is "
        "asked twice unless -b is given; it is never printed. The file is replaced "
        "atomically and left readable by its owner only (mode 0600). The broker "
        "reads it at start (auth.password_file).",
    )
    passwd.add_argument(
        "-c",
        dest="create",
        action="store_true",
        help="create the file, replacing it if it exists",
    )
    passwd.add_argument(
        "-b",
        dest="batch",
        action="store_true",
        help="take the password from the command line (visible to other local "
        "users in the process list: for scripts on a trusted machine)",
    )
    passwd.add_argument("-D", dest="delete", action="store_true", help="delete USER")
    passwd.add_argument(
        "-U",
        dest="upgrade",
        action="store_true",
        help="hash every plain NAME:PASSWORD line of FILE in place",
    )
    passwd.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        metavar="N",
        help=f"PBKDF2 iterations of new hashes (default: {DEFAULT_ITERATIONS})",
    )
    passwd.add_argument("file", metavar="FILE", help="the password file")
    passwd.add_argument("user", metavar="USER", nargs="?", help="the user name")
    passwd.add_argument("password", metavar="PASSWORD", nargs="?", help="the password, with -b")
    passwd.set_defaults(handler=_passwd)
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
