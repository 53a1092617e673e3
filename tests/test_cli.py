# -*- test-case-name: tests.test_cli -*-
"""
Tests for L{mqttx.cli}, the C{mqttx} command.
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from mqttx import __version__
from mqttx.cli import main

CHECKOUT = FilePath(__file__).parent().parent()
EXAMPLE = CHECKOUT.descendant(["etc", "mqttx.yaml"])


class CLITests(SynchronousTestCase):
    """
    The C{mqttx} command's subcommands.
    """

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = main(list(argv), out=out, err=err)
        return status, out.getvalue(), err.getvalue()

    def test_version(self) -> None:
        """
        C{mqttx version} prints the package version.
        """
        self.assertEqual(self.run_cli("version"), (0, f"mqttx {__version__}\n", ""))

    def test_check_config_ok(self) -> None:
        """
        C{mqttx check-config --config PATH} prints C{PATH: OK} for a valid
        file and exits 0.
        """
        for flag in ("--config", "-c"):
            self.assertEqual(
                self.run_cli("check-config", flag, EXAMPLE.path), (0, f"{EXAMPLE.path}: OK\n", "")
            )

    def test_check_config_default_path(self) -> None:
        """
        Without C{--config}, C{etc/mqttx.yaml} in the working directory is
        checked.
        """
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(CHECKOUT.path)
        self.assertEqual(self.run_cli("check-config"), (0, f"{EXAMPLE.path}: OK\n", ""))

    def test_check_config_error(self) -> None:
        """
        An invalid file prints its one-line error on standard error and
        exits 1.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"logging: {format: xml}\n")
        self.assertEqual(
            self.run_cli("check-config", "--config", path.path),
            (1, "", f"{path.path}: logging.format: expected one of: text, json, got 'xml'\n"),
        )

    def test_check_config_missing_file(self) -> None:
        """
        A missing file is an error naming it.
        """
        path = FilePath(self.mktemp())
        status, out, err = self.run_cli("check-config", "--config", path.path)
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, f"{path.path}: cannot read the file: No such file or directory\n")

    def test_command_required(self) -> None:
        """
        Without a command, usage is printed and the exit status is 2.
        """
        with self.assertRaises(SystemExit) as caught, redirect_stderr(io.StringIO()) as usage:
            main([], out=io.StringIO(), err=io.StringIO())
        self.assertIn("usage: mqttx", usage.getvalue())
        self.assertEqual(caught.exception.code, 2)

    def test_unknown_command(self) -> None:
        """
        An unknown command is a usage error.
        """
        with self.assertRaises(SystemExit) as caught, redirect_stderr(io.StringIO()) as usage:
            main(["serve"], out=io.StringIO(), err=io.StringIO())
        self.assertIn("invalid choice: 'serve'", usage.getvalue())
        self.assertEqual(caught.exception.code, 2)
