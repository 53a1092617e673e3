# -*- test-case-name: tests.test_cli -*-
"""
Tests for L{mqttx.cli}, the C{mqttx} command.
"""

from __future__ import annotations

import getpass
import io
import os
import stat
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from mqttx import __version__
from mqttx.auth.passwords import (
    PasswordEntry,
    format_line,
    hash_password,
    read_password_file,
    scram_keys,
    verify_password,
)
from mqttx.cli import main
from mqttx.store.sqlite import SQLiteStore
from mqttx.store.tools import stats
from tests.store.test_tools import NOT_A_DATABASE, filled
from tests.tlscerts import make_authority

CHECKOUT = FilePath(__file__).parent().parent()
EXAMPLE = CHECKOUT.descendant(["etc", "mqttx.yaml"])


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Run C{mqttx ARGV}: its exit status, standard output and error."""
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


class CLITests(SynchronousTestCase):
    """
    The C{mqttx} command's subcommands.
    """

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        return run_cli(*argv)

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

    def test_check_config_tls_files(self) -> None:
        """
        The certificates and keys of TLS listeners are loaded too: a key
        that does not go with its certificate is reported on one line
        naming the file; good ones pass.
        """
        folder = FilePath(self.mktemp())
        ca = make_authority(folder)
        server, other = ca.issue("broker", server=True), ca.issue("other", server=True)
        path = folder.child("mqttx.yaml")

        def check(key: str) -> tuple[int, str, str]:
            path.setContent(
                (
                    "listeners:\n"
                    '  - {name: mqtts, protocol: mqtt, endpoint: "tcp:8883",'
                    f" tls: {{cert: '{server.cert}', key: '{key}'}}}}\n"
                ).encode()
            )
            return self.run_cli("check-config", "--config", path.path)

        self.assertEqual(check(server.key), (0, f"{path.path}: OK\n", ""))
        status, out, err = check(other.key)
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err.splitlines(), [err.strip()])
        self.assertIn(f"{path.path}: listener 'mqtts': tls.key {other.key}: does not go with", err)

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


class StoreCommandTests(SynchronousTestCase):
    """
    C{mqttx store stats} and C{mqttx store backup} work on the database the
    configuration names.
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.db = self.dir / "var" / "mqttx.db"
        self.config = self.dir / "mqttx.yaml"
        self.config.write_text(f"persistence: {{backend: sqlite, path: '{self.db}'}}\n")

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        return run_cli(*argv)

    def test_stats(self) -> None:
        """
        C{mqttx store stats --config PATH} prints the counts, one
        C{name: value} per line.
        """
        filled(self, self.db)
        expected = "".join(f"{line}\n" for line in stats(self.db).lines())
        for flag in ("--config", "-c"):
            self.assertEqual(
                self.run_cli("store", "stats", flag, str(self.config)), (0, expected, "")
            )
        self.assertIn("sessions: 2\n", expected)

    def test_stats_while_open(self) -> None:
        """
        Stats are read while the store is open (a broker running).
        """
        store = SQLiteStore(self.db)
        self.addCleanup(store.close)
        status, out, err = self.run_cli("store", "stats", "--config", str(self.config))
        self.assertEqual((status, err), (0, ""))
        self.assertIn("sessions: 0\n", out)

    def test_stats_default_config(self) -> None:
        """
        Without C{--config}, C{etc/mqttx.yaml} is read; its relative
        C{persistence.path} is taken from the working directory, like the
        broker does.
        """
        (self.dir / "etc").mkdir()
        (self.dir / "etc" / "mqttx.yaml").write_text("persistence: {path: var/mqttx.db}\n")
        filled(self, self.db)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.dir)
        status, out, err = self.run_cli("store", "stats")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out.splitlines()[0], f"database: {self.db}")

    def assertFails(self, argv: list[str], *fragments: str) -> str:
        """Assert that the command fails with one line on standard error."""
        status, out, err = self.run_cli(*argv)
        self.assertEqual((status, out), (1, ""))
        [line] = err.splitlines()
        self.assertTrue(err.endswith("\n"))
        for fragment in fragments:
            self.assertIn(fragment, line)
        return line

    def test_stats_memory_backend(self) -> None:
        """
        With the memory backend there is no database to look at.
        """
        self.config.write_text("persistence: {backend: memory}\n")
        self.assertFails(
            ["store", "stats", "--config", str(self.config)],
            f"{self.config}: persistence.backend is 'memory'",
            "sqlite",
        )

    def test_stats_config_error(self) -> None:
        """
        An invalid configuration file is reported as by C{check-config}.
        """
        self.config.write_text("persistence: {backend: redis}\n")
        self.assertFails(
            ["store", "stats", "--config", str(self.config)],
            f"{self.config}: persistence.backend: unknown backend 'redis'",
        )

    def test_stats_missing_database(self) -> None:
        """
        A database that does not exist is named, and not created.
        """
        self.assertFails(
            ["store", "stats", "--config", str(self.config)], str(self.db), "no such database file"
        )
        self.assertFalse(self.db.parent.exists())

    def test_stats_unusable_database(self) -> None:
        """
        A file that is not an mqttx database is named, and left alone.
        """
        self.db.parent.mkdir()
        self.db.write_bytes(NOT_A_DATABASE)
        self.assertFails(
            ["store", "stats", "--config", str(self.config)],
            str(self.db),
            "not a usable mqttx database",
        )
        self.assertEqual(self.db.read_bytes(), NOT_A_DATABASE)

    def test_backup(self) -> None:
        """
        C{mqttx store backup TARGET} copies the database and says what it
        wrote; the copy holds the same data.
        """
        filled(self, self.db)
        target = self.dir / "copy.db"
        status, out, err = self.run_cli(
            "store", "backup", str(target), "--config", str(self.config)
        )
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, f"{target}: {target.stat().st_size} bytes, copied from {self.db}\n")
        self.assertEqual(stats(target).lines()[1:-1], stats(self.db).lines()[1:-1])

    def test_backup_refused(self) -> None:
        """
        An existing target or a missing folder is refused with one line; so
        is a configuration without a sqlite database.
        """
        filled(self, self.db)
        self.assertFails(
            ["store", "backup", str(self.db), "--config", str(self.config)], "already exists"
        )
        missing = self.dir / "nowhere" / "copy.db"
        self.assertFails(
            ["store", "backup", str(missing), "--config", str(self.config)], "no such directory"
        )
        self.config.write_text("persistence: {backend: memory}\n")
        self.assertFails(
            ["store", "backup", str(self.dir / "copy.db"), "--config", str(self.config)],
            "persistence.backend is 'memory'",
        )
        self.assertFalse((self.dir / "copy.db").exists())

    def test_usage_errors(self) -> None:
        """
        C{store} needs a subcommand, and C{backup} a target.
        """
        for argv in (["store"], ["store", "backup"], ["store", "vacuum"]):
            with self.assertRaises(SystemExit) as caught, redirect_stderr(io.StringIO()) as usage:
                main(argv, out=io.StringIO(), err=io.StringIO())
            self.assertEqual(caught.exception.code, 2)
            self.assertIn("usage: mqttx store", usage.getvalue())


class PasswdTests(SynchronousTestCase):
    """
    C{mqttx passwd} manages the password file (L{mqttx.auth.passwords}).
    """

    def setUp(self) -> None:
        folder = self.mktemp()
        os.mkdir(folder)
        self.folder = folder
        self.path = os.path.join(folder, "passwd")
        self.prompts: list[str] = []
        self.answers: list[str] = []

        def fake_getpass(prompt: str = "Password: ", stream: object = None) -> str:
            self.prompts.append(prompt)
            return self.answers.pop(0)

        self.patch(getpass, "getpass", fake_getpass)

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        return run_cli("passwd", "--iterations", "1000", *argv)

    def users(self) -> dict[str, PasswordEntry]:
        return read_password_file(self.path)

    def assertVerifies(self, user: str, password: str) -> None:
        self.assertTrue(verify_password(self.users()[user], password.encode()))

    def test_writes_scram_keys(self) -> None:
        """
        Passwords set with C{-b} and hashed with C{-U} get SCRAM-SHA-256
        keys (4096 iterations) derived from them, and an entry without keys
        (from before SCRAM) stays as it is when another user is added.
        """
        old = format_line("old", hash_password("o", 1000, scram=False))
        with open(self.path, "w") as f:
            f.write(f"{old}\nplain:pw\n")
        self.assertEqual(self.run_cli("-U", self.path)[0], 0)
        self.assertEqual(self.run_cli("-b", self.path, "bob", "pencil")[0], 0)
        users = self.users()
        self.assertIsNone(users["old"].scram)
        for user, password in [("plain", "pw"), ("bob", "pencil")]:
            keys = users[user].scram
            assert keys is not None
            self.assertEqual(keys, scram_keys(password, 4096, keys.salt))

    def test_create_prompts_twice(self) -> None:
        """
        C{mqttx passwd -c FILE USER} asks for the password twice and
        creates the file with the user's hash, mode 0600; the password is
        never printed.
        """
        self.answers = ["s3cret!", "s3cret!"]
        status, out, err = self.run_cli("-c", self.path, "alice")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, f"{self.path}: added user 'alice'\n")
        self.assertEqual(self.prompts, ["Password for alice: ", "Reenter password: "])
        self.assertVerifies("alice", "s3cret!")
        self.assertEqual(self.users()["alice"].iterations, 1000)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        with open(self.path) as f:
            self.assertNotIn("s3cret!", f.read())

    def test_mismatch(self) -> None:
        """
        If the two answers differ, nothing is written and the status is 1.
        """
        self.answers = ["one", "two"]
        status, out, err = self.run_cli("-c", self.path, "alice")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("do not match", err)
        self.assertFalse(os.path.exists(self.path))

    def test_add_update_batch(self) -> None:
        """
        C{mqttx passwd -b FILE USER PASSWORD} adds a user to an existing
        file, or changes the password of one already there, keeping the
        others and comments.
        """
        self.assertEqual(self.run_cli("-c", "-b", self.path, "alice", "a1")[0], 0)
        with open(self.path, "a") as f:
            f.write("# comment\n")
        status, out, _ = self.run_cli("-b", self.path, "bob", "b1")
        self.assertEqual((status, out), (0, f"{self.path}: added user 'bob'\n"))
        status, out, _ = self.run_cli("-b", self.path, "alice", "a2")
        self.assertEqual((status, out), (0, f"{self.path}: updated the password of user 'alice'\n"))
        self.assertVerifies("alice", "a2")
        self.assertVerifies("bob", "b1")
        with open(self.path) as f:
            lines = f.read().splitlines()
        self.assertEqual([line.partition(":")[0] for line in lines], ["alice", "# comment", "bob"])

    def test_add_interactive(self) -> None:
        """
        C{mqttx passwd FILE USER} prompts, and adds the user.
        """
        self.run_cli("-c", "-b", self.path, "alice", "a1")
        self.answers = ["b1", "b1"]
        self.assertEqual(self.run_cli(self.path, "bob")[0], 0)
        self.assertVerifies("bob", "b1")

    def test_add_needs_file(self) -> None:
        """
        Without C{-c}, the file must exist.
        """
        status, out, err = self.run_cli("-b", self.path, "alice", "a")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("cannot read the password file", err)

    def test_delete(self) -> None:
        """
        C{mqttx passwd -D FILE USER} removes the user; an unknown user is
        an error.
        """
        self.run_cli("-c", "-b", self.path, "alice", "a1")
        self.run_cli("-b", self.path, "bob", "b1")
        self.assertEqual(
            self.run_cli("-D", self.path, "alice"), (0, f"{self.path}: deleted user 'alice'\n", "")
        )
        self.assertEqual(sorted(self.users()), ["bob"])
        status, _, err = self.run_cli("-D", self.path, "alice")
        self.assertEqual(status, 1)
        self.assertIn("no user 'alice'", err)

    def test_hash_plain_file(self) -> None:
        """
        C{mqttx passwd -U FILE} hashes every plain C{user:password} line in
        place, leaving hashed lines and comments as they are.
        """
        self.run_cli("-c", "-b", self.path, "alice", "a1")
        with open(self.path, "a") as f:
            f.write("# plain ones\nbob:b:with:colons\ncarol:$notahash\n")
        os.chmod(self.path, 0o644)
        status, out, err = self.run_cli("-U", self.path)
        self.assertEqual((status, out, err), (0, f"{self.path}: hashed 2 passwords\n", ""))
        self.assertVerifies("alice", "a1")
        self.assertVerifies("bob", "b:with:colons")
        self.assertVerifies("carol", "$notahash")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(self.run_cli("-U", self.path)[1], f"{self.path}: hashed 0 passwords\n")

    def test_hash_plain_file_bad_line(self) -> None:
        """
        A bad line stops C{-U} with its number, and nothing is written.
        """
        with open(self.path, "w") as f:
            f.write("alice:a\nnocolon\n")
        status, _, err = self.run_cli("-U", self.path)
        self.assertEqual(status, 1)
        self.assertIn(f"{self.path}, line 2: expected NAME:PASSWORD", err)
        with open(self.path) as f:
            self.assertEqual(f.read(), "alice:a\nnocolon\n")

    def test_bad_file_not_changed(self) -> None:
        """
        Adding to a file with a bad line fails with its number, without
        printing the line's hash or changing the file.
        """
        with open(self.path, "w") as f:
            f.write("alice:plain-secret\n")
        status, out, err = self.run_cli("-b", self.path, "bob", "b")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("line 1", err)
        self.assertNotIn("plain-secret", err)

    def test_usage_problems(self) -> None:
        """
        Contradictory or missing arguments are refused with status 1 and a
        reason; no password is ever echoed.
        """
        self.run_cli("-c", "-b", self.path, "alice", "a1")
        for argv, fragment in [
            (("-D", "-U", self.path), "cannot be combined"),
            (("-U", self.path, "alice"), "-U takes only"),
            (("-b", self.path, "bob"), "-b needs the password"),
            ((self.path, "bob", "pw-on-line"), "needs -b"),
            ((self.path,), "user name is required"),
            (("-b", self.path, "a:b", "x"), "cannot contain ':'"),
            (("-b", self.path, "bob", ""), "password is empty"),
            (("--iterations", "5", "-b", self.path, "bob", "x"), "--iterations must be"),
        ]:
            status, out, err = self.run_cli(*argv)
            self.assertEqual((status, out), (1, ""), argv)
            self.assertIn(fragment, err, argv)
            self.assertNotIn("pw-on-line", err)


class ModuleTests(SynchronousTestCase):
    """
    C{python -m mqttx} is the C{mqttx} command, for checkouts and
    environments without the console script.
    """

    def test_version(self) -> None:
        """
        C{python -m mqttx version} prints the version and exits 0; a bad
        command exits non-zero.
        """
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        done = subprocess.run(
            [sys.executable, "-m", "mqttx", "version"], capture_output=True, text=True, env=env, timeout=60
        )
        self.assertEqual((done.returncode, done.stdout.strip()), (0, f"mqttx {__version__}"), done.stderr)
        bad = subprocess.run(
            [sys.executable, "-m", "mqttx", "no-such-command"], capture_output=True, text=True, env=env, timeout=60
        )
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("no-such-command", bad.stderr)
