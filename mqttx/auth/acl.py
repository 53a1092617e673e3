# -*- test-case-name: tests.auth.test_acl -*-
"""
Topic access control from an ACL file in Mosquitto's form.

The file, one rule per line::

    # Comments start a line with '#'; blank lines are ignored.
    topic read public/#              # before any 'user' line: anonymous clients
    user alice
    topic readwrite alice/#          # for the user alice
    topic deny alice/secret
    pattern write devices/%c/status  # for every client, anywhere in the file

  - C{topic [read|write|readwrite|deny] FILTER}: a rule for the clients of
    the section it is in. Lines before the first C{user} line apply to
    clients without a username (anonymous), as in Mosquitto; a client with
    a username gets the rules of its own C{user} section, if any.
  - C{user NAME}: starts the section of the user NAME (the rest of the
    line, so names may contain spaces). A name given twice adds to its
    first section.
  - C{pattern [read|write|readwrite|deny] FILTER}: a rule for every client
    wherever it stands, with C{%u} replaced by the client's username and
    C{%c} by its client identifier. A pattern applies to a client only if
    each substitution is a single plain topic level: a username or client
    identifier containing C{+}, C{#} or C{/} (or C{%u} for a client without
    a username) makes the pattern match nothing, so nobody widens their
    access by choosing such a name.

  Without an access word a rule grants C{readwrite}; the filter is the
  rest of the line. Once a file is set, everything it does not grant is
  denied, and a C{deny} rule wins over any grant.

Checks, for a client (L{ClientAccess}):

  - publish to topic T: a C{write} rule's filter matches T;
  - subscribe to filter F: a C{read} rule's filter covers F, that is
    matches every topic F matches (C{a/+} covers C{a/b} and C{a/+}, not
    C{a/#}, which also matches C{a}), and no C{deny} rule covers F. A
    C{deny} rule that covers part of F only is enforced on delivery;
  - delivery of topic T: a C{read} rule's filter matches T.

C{$SYS} topics are readable only by the configured admins, whatever the
file says; admins may read them all. Rules follow MQTT's matching: a rule
starting with a wildcard does not match C{$} topics [MQTT-4.7.2-1].

Decisions are cached per client, in bounded caches, so the check on each
delivery is one dictionary lookup once a topic has been seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from twisted.python.filepath import FilePath
from zope.interface import implementer

from mqttx.interfaces import IAuthorizer, IClientAccess
from mqttx.mqtt.topics import SHARE_PREFIX, is_valid_topic_filter

__all__ = ["ACL", "ACLAuthorizer", "ACLError", "ClientAccess", "Rule", "covers", "load_acl", "parse_acl"]

READ: Final = 1
WRITE: Final = 2
DENY: Final = 4

_ACCESS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE, "deny": DENY}

#: Topics decided per client before its caches start over.
CACHE_SIZE: Final = 1024
#: Clients whose compiled rules are kept.
CLIENT_CACHE_SIZE: Final = 4096


class ACLError(Exception):
    """An ACL file that cannot be read or is not valid; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Rule:
    """
    One C{topic} or C{pattern} line.

    @ivar access: L{READ}, L{WRITE}, both, or L{DENY}.
    @ivar filter: the topic filter, with C{%u} / C{%c} for patterns.
    @ivar line: its line number, for messages.
    """

    access: int
    filter: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class ACL:
    """
    A parsed ACL file.

    @ivar anonymous: the rules before any C{user} line.
    @ivar users: each user's rules.
    @ivar patterns: the C{pattern} rules, for everybody.
    """

    anonymous: tuple[Rule, ...] = ()
    users: dict[str, tuple[Rule, ...]] | None = None
    patterns: tuple[Rule, ...] = ()

    def rules_for(self, username: str | None) -> tuple[Rule, ...]:
        """The C{topic} rules of a client with C{username} (C{None}: anonymous)."""
        if username is None:
            return self.anonymous
        return (self.users or {}).get(username, ())


def parse_acl(text: str, source: str = "<acl>") -> ACL:
    """
    Parse an ACL file's text.

    @param source: the file's name, for messages.
    @raise ACLError: for the first invalid line, naming C{source} and the line.
    """
    anonymous: list[Rule] = []
    users: dict[str, list[Rule]] = {}
    patterns: list[Rule] = []
    section = anonymous
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, *more = line.split(None, 1)
        rest = more[0] if more else ""
        where = f"{source}, line {number}"
        if keyword == "user":
            if not rest:
                raise ACLError(f"{where}: 'user' needs a username")
            section = users.setdefault(rest, [])
        elif keyword in ("topic", "pattern"):
            access = READ | WRITE
            words = rest.split(None, 1)
            if len(words) == 2 and words[0] in _ACCESS:
                access = _ACCESS[words[0]]
                rest = words[1]
            if not rest:
                raise ACLError(f"{where}: '{keyword}' needs a topic filter")
            if not is_valid_topic_filter(rest):
                raise ACLError(f"{where}: invalid topic filter {rest!r}")
            rule = Rule(access, rest, number)
            (patterns if keyword == "pattern" else section).append(rule)
        else:
            raise ACLError(f"{where}: unknown keyword {keyword!r}; expected user, topic or pattern")
    return ACL(tuple(anonymous), {name: tuple(rules) for name, rules in users.items()}, tuple(patterns))


def load_acl(path: str) -> ACL:
    """
    Read and parse the ACL file at C{path}.

    @raise ACLError: if it cannot be read (naming the file) or is not valid.
    """
    try:
        text = FilePath(path).getContent().decode("utf-8")
    except OSError as e:
        raise ACLError(f"{path}: cannot read the ACL file: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ACLError(f"{path}: the ACL file is not UTF-8: {e}") from e
    return parse_acl(text, path)


def _substitute(filter: str, username: str | None, client_id: str) -> str | None:
    """A pattern's filter for one client, or C{None} if it must match nothing."""
    if "%u" in filter:
        if username is None or not _plain_level(username):
            return None
        filter = filter.replace("%u", username)
    if "%c" in filter:
        if not _plain_level(client_id):
            return None
        filter = filter.replace("%c", client_id)
    return filter


def _plain_level(name: str) -> bool:
    return not ("+" in name or "#" in name or "/" in name)


def _granted(grants: Iterable[tuple[str, ...]], denials: Iterable[tuple[str, ...]], topic: str) -> bool:
    """Whether a rule of C{grants} matches C{topic} and none of C{denials} does."""
    levels = tuple(topic.split("/"))
    return any(_matches(r, levels) for r in grants) and not any(_matches(r, levels) for r in denials)


def _matches(levels: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    """Whether filter C{levels} match C{topic} levels (section 4.7)."""
    if topic[0][:1] == "$" and levels[0] in ("+", "#"):
        return False  # [MQTT-4.7.2-1]
    depth = len(topic)
    for index, level in enumerate(levels):
        if level == "#":
            return True
        if index >= depth:
            return False
        if level != "+" and level != topic[index]:
            return False
    return len(levels) == depth


def covers(rule: str, filter: str) -> bool:
    """
    Whether every topic that C{filter} matches is matched by C{rule}.

    C{a/+} covers C{a/b} and C{a/+} but not C{a/#} (which matches C{a}
    too) nor C{a/b/c}; C{a/#} covers all three; C{#} covers everything
    except filters for C{$} topics [MQTT-4.7.2-1].
    """
    return _covers(tuple(rule.split("/")), tuple(filter.split("/")))


def _covers(rule: tuple[str, ...], filter: tuple[str, ...]) -> bool:
    if filter[0][:1] == "$" and rule[0] in ("+", "#"):
        return False
    depth = len(filter)
    for index, level in enumerate(rule):
        if level == "#":
            return True
        if index >= depth:
            return False
        wanted = filter[index]
        if wanted == "#":
            return False  # Only '#' covers '#'.
        if level != "+" and level != wanted:
            return False  # A literal covers only itself, not '+'.
    return len(rule) == depth


class _Compiled:
    """One client's rules, split into levels, ready to match."""

    __slots__ = ("deny", "read", "write")

    def __init__(self, rules: Iterable[Rule], username: str | None, client_id: str, pattern_rules: Iterable[Rule]):
        self.read: list[tuple[str, ...]] = []
        self.write: list[tuple[str, ...]] = []
        self.deny: list[tuple[str, ...]] = []
        for rule in rules:
            self._add(rule.access, rule.filter)
        for rule in pattern_rules:
            filter = _substitute(rule.filter, username, client_id)
            if filter is not None:
                self._add(rule.access, filter)

    def _add(self, access: int, filter: str) -> None:
        levels = tuple(filter.split("/"))
        if access & DENY:
            self.deny.append(levels)
        if access & READ:
            self.read.append(levels)
        if access & WRITE:
            self.write.append(levels)


@implementer(IClientAccess)
class ClientAccess:
    """
    What one client (username and client identifier) may do, with its
    decisions cached. Handed out by L{ACLAuthorizer.for_client}; after a
    reload of the authorizer it recompiles on its next check.
    """

    __slots__ = (
        "_authorizer",
        "_client_id",
        "_compiled",
        "_generation",
        "_read",
        "_sub",
        "_username",
        "_write",
        "admin",
    )

    def __init__(self, authorizer: ACLAuthorizer, username: str | None, client_id: str) -> None:
        self._authorizer = authorizer
        self._username = username
        self._client_id = client_id
        self.admin = username is not None and username in authorizer.admins
        self._generation = -1
        self._compiled: _Compiled | None = None
        self._read: dict[str, bool] = {}
        self._write: dict[str, bool] = {}
        self._sub: dict[str, bool] = {}

    def _rules(self) -> _Compiled | None:
        authorizer = self._authorizer
        if self._generation != authorizer.generation:
            self._generation = authorizer.generation
            self._read.clear()
            self._write.clear()
            self._sub.clear()
            acl = authorizer.acl
            self._compiled = (
                None
                if acl is None
                else _Compiled(acl.rules_for(self._username), self._username, self._client_id, acl.patterns)
            )
        return self._compiled

    def can_publish(self, topic: str) -> bool:
        """Whether the client may publish to C{topic}."""
        compiled = self._rules()
        decided = self._write.get(topic)
        if decided is None:
            if compiled is None:
                decided = True
            else:
                decided = _granted(compiled.write, compiled.deny, topic)
            _remember(self._write, topic, decided)
        return decided

    def can_read(self, topic: str) -> bool:
        """Whether a message published to C{topic} may be delivered to the client."""
        if self._generation == self._authorizer.generation:
            # The delivery path: one lookup once the topic is known.
            decided = self._read.get(topic)
            if decided is not None:
                return decided
        return self._decide_read(topic)

    def _decide_read(self, topic: str) -> bool:
        compiled = self._rules()
        decided = self._read.get(topic)
        if decided is None:
            if topic.startswith("$SYS/") or topic == "$SYS":
                decided = self.admin
            elif compiled is None:
                decided = True
            else:
                decided = _granted(compiled.read, compiled.deny, topic)
            _remember(self._read, topic, decided)
        return decided

    def can_subscribe(self, filter: str) -> bool:
        """
        Whether the client may subscribe to C{filter} (a C{$share/GROUP/}
        prefix is looked through).
        """
        compiled = self._rules()
        decided = self._sub.get(filter)
        if decided is None:
            inner = filter
            if filter.startswith(SHARE_PREFIX):
                inner = filter[len(SHARE_PREFIX) :].partition("/")[2]
            levels = tuple(inner.split("/"))
            if levels[0] == "$SYS":
                decided = self.admin
            elif compiled is None:
                decided = True
            else:
                decided = any(_covers(r, levels) for r in compiled.read) and not any(
                    _covers(r, levels) for r in compiled.deny
                )
            _remember(self._sub, filter, decided)
        return decided


def _remember(cache: dict[str, bool], key: str, value: bool) -> None:
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    cache[key] = value


@implementer(IAuthorizer)
class ACLAuthorizer:
    """
    Topic access control from an ACL file, and C{$SYS} for admins.

    @param acl: the parsed file, or C{None} to allow everything but reading
        C{$SYS} topics (for admins only).
    @param admins: the usernames that may read C{$SYS} topics.
    @param path: the file L{reload} reads again.
    @ivar generation: bumped by each successful reload; clients' compiled
        rules and cached decisions from before are dropped.
    """

    def __init__(self, acl: ACL | None, admins: Iterable[str] = (), path: str | None = None) -> None:
        self.acl = acl
        self.admins = frozenset(admins)
        self.path = path
        self.generation = 0
        self._clients: dict[tuple[str | None, str], ClientAccess] = {}

    @classmethod
    def from_file(cls, path: str, admins: Iterable[str] = ()) -> ACLAuthorizer:
        """
        Load the ACL file at C{path}.

        @raise ACLError: if it cannot be read or is not valid.
        """
        return cls(load_acl(path), admins, path)

    def for_client(self, client_id: str, username: str | None) -> ClientAccess:
        """The access of a client connecting with C{client_id} and C{username}."""
        key = (username, client_id)
        access = self._clients.get(key)
        if access is None:
            if len(self._clients) >= CLIENT_CACHE_SIZE:
                self._clients.clear()
            access = self._clients[key] = ClientAccess(self, username, client_id)
        return access

    def reload(self) -> None:
        """
        Read the ACL file again. On success every client's access follows
        the new rules from its next check.

        @raise ACLError: if the file cannot be read or is not valid; the
            old rules stay in force.
        """
        if self.path is None:
            return
        self.acl = load_acl(self.path)
        self.generation += 1



def build_authorizer(acl_file: str | None, admins: Iterable[str]) -> ACLAuthorizer | None:
    """
    The authorizer for the C{auth} settings: from the ACL file if one is
    set; else, with admins, one that only keeps C{$SYS} to them; else
    C{None} (everything allowed, nothing checked).

    @raise ACLError: if the ACL file cannot be read or is not valid.
    """
    if acl_file is not None:
        return ACLAuthorizer.from_file(acl_file, admins)
    admins = tuple(admins)
    if admins:
        return ACLAuthorizer(None, admins)
    return None
