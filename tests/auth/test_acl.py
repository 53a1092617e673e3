# -*- test-case-name: tests.auth.test_acl -*-
"""
Tests for L{mqttx.auth.acl}: the ACL file parser and the access decisions.
"""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mqttx.auth.acl import (
    ACL,
    CACHE_SIZE,
    DENY,
    READ,
    WRITE,
    ACLAuthorizer,
    ACLError,
    Rule,
    build_authorizer,
    covers,
    load_acl,
    parse_acl,
)
from mqttx.interfaces import IAuthorizer, IClientAccess


def access(text: str, username: str | None = None, client_id: str = "c", admins: tuple[str, ...] = ()) -> IClientAccess:
    """The access of one client under the ACL C{text}."""
    return ACLAuthorizer(parse_acl(text), admins).for_client(client_id, username)


class ParserTests(SynchronousTestCase):
    """L{parse_acl} reads Mosquitto's ACL form."""

    def test_every_line_form(self) -> None:
        """
        C{topic} and C{pattern} lines take an optional access word (none:
        readwrite); lines before the first C{user} line are for anonymous
        clients; comments and blank lines are skipped; patterns are global
        wherever they stand.
        """
        acl = parse_acl(
            "# comment\n"
            "\n"
            "topic public/#\n"
            "  topic read news/+\n"
            "user alice\n"
            "topic write alice/out\n"
            "topic\treadwrite  alice/#\n"
            "pattern deny %u/secret\n"
            "user bob smith\n"
            "topic deny bob/x\n"
            "pattern read in/%c\n"
        )
        self.assertEqual(
            acl.anonymous, (Rule(READ | WRITE, "public/#", 3), Rule(READ, "news/+", 4))
        )
        self.assertEqual(
            acl.users,
            {
                "alice": (Rule(WRITE, "alice/out", 6), Rule(READ | WRITE, "alice/#", 7)),
                "bob smith": (Rule(DENY, "bob/x", 10),),
            },
        )
        self.assertEqual(acl.patterns, (Rule(DENY, "%u/secret", 8), Rule(READ, "in/%c", 11)))

    def test_access_word_alone_is_the_filter(self) -> None:
        """C{topic read} with nothing after it grants readwrite on the topic C{read}."""
        self.assertEqual(parse_acl("topic read").anonymous, (Rule(READ | WRITE, "read", 1),))

    def test_user_repeated_adds_to_section(self) -> None:
        """A C{user} named twice keeps the rules of both sections."""
        acl = parse_acl("user a\ntopic x\nuser b\nuser a\ntopic y\n")
        self.assertEqual(acl.rules_for("a"), (Rule(READ | WRITE, "x", 2), Rule(READ | WRITE, "y", 5)))
        self.assertEqual(acl.rules_for("nobody"), ())

    def test_errors_name_file_and_line(self) -> None:
        """Each invalid line is refused with the file's name and its line number."""
        cases = [
            ("\n\nfrobnicate x\n", "acl.conf, line 3: unknown keyword 'frobnicate'"),
            ("user\n", "acl.conf, line 1: 'user' needs a username"),
            ("# c\ntopic\n", "acl.conf, line 2: 'topic' needs a topic filter"),
            ("pattern  \n", "acl.conf, line 1: 'pattern' needs a topic filter"),
            ("topic a/#/b\n", "acl.conf, line 1: invalid topic filter 'a/#/b'"),
            ("topic read a+\n", "acl.conf, line 1: invalid topic filter 'a+'"),
        ]
        for text, message in cases:
            with self.assertRaises(ACLError) as caught:
                parse_acl(text, "acl.conf")
            self.assertIn(message, str(caught.exception), text)

    def test_load_acl(self) -> None:
        """L{load_acl} reads a file; a missing one is an L{ACLError} naming it."""
        path = FilePath(self.mktemp())
        path.setContent(b"topic read a\n")
        self.assertEqual(load_acl(path.path).anonymous, (Rule(READ, "a", 1),))
        missing = FilePath(self.mktemp()).path
        with self.assertRaises(ACLError) as caught:
            load_acl(missing)
        self.assertIn(missing, str(caught.exception))
        path.setContent(b"topic \xff\n")
        with self.assertRaises(ACLError) as caught:
            load_acl(path.path)
        self.assertIn("not UTF-8", str(caught.exception))


class CoversTests(SynchronousTestCase):
    """L{covers}: whether a rule's filter matches every topic a subscription's filter does."""

    def test_covers(self) -> None:
        """
        C{+} matches one level and C{#} any number including the parent
        [MQTT-4.7.1-2], [MQTT-4.7.1-3]: C{a/+} covers C{a/b} and C{a/+} but
        not C{a/#} (which matches C{a}) nor C{a/b/c}.
        """
        yes = [
            ("a/+", "a/b"),
            ("a/+", "a/+"),
            ("a/#", "a/#"),
            ("a/#", "a"),
            ("a/#", "a/+/c"),
            ("a/#", "a/b/#"),
            ("#", "a/#"),
            ("#", "#"),
            ("+/+", "+/b"),
            ("a/b", "a/b"),
        ]
        no = [
            ("a/+", "a/#"),
            ("a/+", "a/b/c"),
            ("a/+", "a"),
            ("a/b", "a/+"),
            ("a/b", "a/#"),
            ("a/+/#", "a/#"),
            ("a/b/#", "a/#"),
            ("+", "+/b"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
        ]
        for rule, filter in yes:
            self.assertTrue(covers(rule, filter), (rule, filter))
        for rule, filter in no:
            self.assertFalse(covers(rule, filter), (rule, filter))


class AccessTests(SynchronousTestCase):
    """What L{ClientAccess} allows."""

    def test_interfaces(self) -> None:
        """L{ACLAuthorizer} and its client access provide their interfaces."""
        authorizer = ACLAuthorizer(ACL())
        self.assertTrue(verifyObject(IAuthorizer, authorizer))
        self.assertTrue(verifyObject(IClientAccess, authorizer.for_client("c", None)))

    def test_nothing_granted_is_denied(self) -> None:
        """With an ACL file, an empty one grants nothing."""
        a = access("")
        self.assertFalse(a.can_publish("a"))
        self.assertFalse(a.can_read("a"))
        self.assertFalse(a.can_subscribe("a"))

    def test_read_and_write(self) -> None:
        """C{read} grants subscribe and receive, C{write} publish, no word both."""
        a = access("topic read r/#\ntopic write w/+\ntopic both\n")
        self.assertTrue(a.can_read("r/x/y"))
        self.assertTrue(a.can_subscribe("r/+/y"))
        self.assertFalse(a.can_publish("r/x"))
        self.assertTrue(a.can_publish("w/x"))
        self.assertFalse(a.can_publish("w/x/y"))
        self.assertFalse(a.can_read("w/x"))
        self.assertFalse(a.can_subscribe("w/x"))
        self.assertTrue(a.can_publish("both"))
        self.assertTrue(a.can_read("both"))

    def test_subscription_must_be_covered(self) -> None:
        """A subscription wider than every read rule is refused: C{a/+} allows C{a/b}, not C{a/#}."""
        a = access("topic read a/+\n")
        self.assertTrue(a.can_subscribe("a/b"))
        self.assertTrue(a.can_subscribe("a/+"))
        self.assertFalse(a.can_subscribe("a/#"))
        self.assertFalse(a.can_subscribe("#"))
        self.assertFalse(a.can_subscribe("a/b/c"))

    def test_shared_subscription_checks_inner_filter(self) -> None:
        """A C{$share/GROUP/} prefix is looked through [MQTT-4.8.2-1]."""
        a = access("topic read a/+\n")
        self.assertTrue(a.can_subscribe("$share/g/a/b"))
        self.assertFalse(a.can_subscribe("$share/g/a/#"))

    def test_deny_wins(self) -> None:
        """
        A C{deny} rule wins over grants, for publish, delivery, and
        subscriptions it covers; a subscription it covers only in part is
        granted, its denied topics filtered on delivery.
        """
        a = access("topic a/#\ntopic deny a/secret/#\n")
        self.assertTrue(a.can_publish("a/b"))
        self.assertFalse(a.can_publish("a/secret"))
        self.assertFalse(a.can_publish("a/secret/x"))
        self.assertFalse(a.can_read("a/secret/x"))
        self.assertFalse(a.can_subscribe("a/secret/+"))
        self.assertTrue(a.can_subscribe("a/#"))
        self.assertTrue(a.can_read("a/open"))

    def test_anonymous_and_user_sections(self) -> None:
        """
        Rules before any C{user} line are for clients without a username;
        a user gets only its own section (as in Mosquitto).
        """
        text = "topic anon\nuser alice\ntopic alice\n"
        self.assertTrue(access(text).can_publish("anon"))
        self.assertFalse(access(text).can_publish("alice"))
        self.assertTrue(access(text, "alice").can_publish("alice"))
        self.assertFalse(access(text, "alice").can_publish("anon"))
        self.assertFalse(access(text, "bob").can_publish("anon"))

    def test_patterns(self) -> None:
        """Patterns apply to everyone, with C{%u} the username and C{%c} the client id."""
        text = "pattern read in/%u/#\npattern write out/%c\nuser alice\npattern %u/%c\n"
        a = access(text, "alice", "dev1")
        self.assertTrue(a.can_subscribe("in/alice/#"))
        self.assertFalse(a.can_subscribe("in/bob/#"))
        self.assertTrue(a.can_publish("out/dev1"))
        self.assertFalse(a.can_publish("out/dev2"))
        self.assertTrue(a.can_publish("alice/dev1"))
        b = access(text, "bob", "dev2")
        self.assertTrue(b.can_publish("out/dev2"))
        self.assertTrue(b.can_publish("bob/dev2"))

    def test_username_pattern_without_username(self) -> None:
        """A C{%u} pattern matches nothing for a client without a username."""
        a = access("pattern %u/#\npattern c/%c\n", None, "dev")
        self.assertFalse(a.can_publish("/x"))
        self.assertFalse(a.can_publish("%u/x"))
        self.assertTrue(a.can_publish("c/dev"))

    def test_wildcards_in_names_do_not_widen_access(self) -> None:
        """
        A username or client id with C{+}, C{#} or C{/} makes the patterns
        using it match nothing: C{#} as a username does not grant C{#}.
        """
        text = "pattern readwrite users/%u/#\npattern devices/%c\n"
        for name in ("#", "+", "a/b", "x#"):
            a = access(text, name, name)
            self.assertFalse(a.can_subscribe("users/#"), name)
            self.assertFalse(a.can_publish("users/other/x"), name)
            self.assertFalse(a.can_publish(f"users/{name}/x"), name)
            self.assertFalse(a.can_publish("devices/other"), name)
            self.assertFalse(a.can_subscribe("devices/+"), name)

    def test_sys_only_for_admins(self) -> None:
        """
        C{$SYS} topics are readable only by admins, whatever the file grants;
        rules starting with a wildcard never match them [MQTT-4.7.2-1].
        """
        text = "topic read #\ntopic read $SYS/#\nuser root\ntopic read #\n"
        plain = access(text)
        self.assertFalse(plain.can_read("$SYS/broker/uptime"))
        self.assertFalse(plain.can_subscribe("$SYS/#"))
        root = access(text, "root", admins=("root",))
        self.assertTrue(root.can_read("$SYS/broker/uptime"))
        self.assertTrue(root.can_subscribe("$SYS/#"))
        self.assertFalse(access(text, "bob", admins=("root",)).can_read("$SYS/x"))

    def test_admins_without_acl_file(self) -> None:
        """Without a file, admins alone allow everything except C{$SYS} to others."""
        authorizer = ACLAuthorizer(None, ("root",))
        anyone = authorizer.for_client("c", "bob")
        self.assertTrue(anyone.can_publish("a/b"))
        self.assertTrue(anyone.can_subscribe("#"))
        self.assertTrue(anyone.can_read("a"))
        self.assertFalse(anyone.can_read("$SYS/x"))
        self.assertFalse(anyone.can_subscribe("$SYS/#"))
        self.assertTrue(authorizer.for_client("c", "root").can_read("$SYS/x"))

    def test_decisions_cached_and_bounded(self) -> None:
        """Decisions are cached per client; a full cache starts over, with the same answers."""
        authorizer = ACLAuthorizer(parse_acl("topic read a/+\n"))
        a = authorizer.for_client("c", None)
        self.assertIs(authorizer.for_client("c", None), a)
        for i in range(CACHE_SIZE + 10):
            self.assertTrue(a.can_read(f"a/{i}"))
        self.assertLessEqual(len(a._read), CACHE_SIZE)
        self.assertFalse(a.can_read("b"))


class ReloadTests(SynchronousTestCase):
    """L{ACLAuthorizer.reload} and L{build_authorizer}."""

    def setUp(self) -> None:
        self.path = FilePath(self.mktemp())
        self.path.setContent(b"topic read a\n")

    def test_reload_applies_to_existing_clients(self) -> None:
        """After a reload, clients already connected follow the new rules."""
        authorizer = ACLAuthorizer.from_file(self.path.path)
        a = authorizer.for_client("c", None)
        self.assertTrue(a.can_read("a"))
        self.path.setContent(b"topic read b\n")
        authorizer.reload()
        self.assertFalse(a.can_read("a"))
        self.assertTrue(a.can_read("b"))

    def test_bad_reload_keeps_old_rules(self) -> None:
        """A reload of a bad file raises L{ACLError} and keeps the old rules."""
        authorizer = ACLAuthorizer.from_file(self.path.path)
        a = authorizer.for_client("c", None)
        self.path.setContent(b"topic read a\nbogus\n")
        with self.assertRaises(ACLError) as caught:
            authorizer.reload()
        self.assertIn("line 2", str(caught.exception))
        self.assertTrue(a.can_read("a"))

    def test_build_authorizer(self) -> None:
        """None without file or admins; from the file when set; admins alone otherwise."""
        self.assertIsNone(build_authorizer(None, ()))
        built = build_authorizer(self.path.path, ("root",))
        assert built is not None
        self.assertTrue(built.for_client("c", None).can_read("a"))
        self.assertFalse(built.for_client("c", None).can_read("b"))
        admins_only = build_authorizer(None, ["root"])
        assert admins_only is not None
        self.assertIsNone(admins_only.acl)
        self.path.setContent(b"nonsense\n")
        self.assertRaises(ACLError, build_authorizer, self.path.path, ())
