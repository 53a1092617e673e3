# -*- test-case-name: tests.integration.test_durability -*-
"""
Durability of the SQLite store (issue 5), end to end: a real C{twistd mqttx}
process with C{persistence: {backend: sqlite}} in a temporary folder, real
clients over loopback TCP, and the broker stopped with SIGTERM or killed
with SIGKILL, then started again on the same database.

Waits are bounded; the real time spent is the processes' start-up, the
broker's timers (will delay, expiries) and the crash test's publishing.
The crash test's kill points are random: its seed is logged and given in
every failure message, and C{MQTTX_CRASH_SEED} replays it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import sys
import time
from collections import Counter
from typing import Any, ClassVar, cast

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ProcessDone
from twisted.internet.interfaces import (
    IProcessTransport,
    IReactorProcess,
    IReactorTCP,
    ITCPTransport,
)
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import FailTest, TestCase

from mqttx.mqtt.codec import Decoder, encode
from mqttx.mqtt.packets import (
    ConnAck,
    Disconnect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
)

from .helpers import (
    HOST,
    TIMEOUT,
    V5,
    V311,
    PahoClient,
    RawClient,
    Received,
    WillSpec,
    connect_packet,
    open_raw,
    pause,
    reactor,
)

log = Logger()

_CONNECTION_DONE = Failure(ConnectionDone())

CHECKOUT = FilePath(__file__).parent().parent().parent()
# What the `twistd` script runs; twistd has no `python -m` entry point.
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
# real-time: starting an interpreter and scanning plugins takes about a
# second; a loaded machine may take several.
START_TIMEOUT = 30.0
# real-time: an orderly shutdown (listeners, clients, the store's flush).
STOP_TIMEOUT = 10.0

_STARTED = re.compile(r"\bmqtt=127\.0\.0\.1:(\d+)")

#: MQTT 5 message properties, by their paho names, that must come back
#: unaltered after a restart ([MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16]
#: [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]).
PROPERTIES: dict[str, Any] = {
    "PayloadFormatIndicator": 1,
    "ContentType": "application/json",
    "ResponseTopic": "dur/reply",
    "CorrelationData": b"\x00corr\xff",
    "UserProperty": [("k", "1"), ("k", "2"), ("other", "v")],
}


def _props_of(received: Received) -> dict[str, Any]:
    """The L{PROPERTIES} a paho client got, in the same shape."""
    props = received.properties
    return {name: getattr(props, name, None) for name in PROPERTIES}


# The broker process.


class _Output(ProcessProtocol):
    """Collects a process's output and reports its end."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.ended: Deferred[int] = Deferred()
        self.code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.out += data

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        if isinstance(value, ProcessDone):
            self.code = 0
        elif signal := getattr(value, "signal", None):
            self.code = -int(signal)
        else:
            self.code = getattr(value, "exitCode", None)
            if self.code is None:
                self.code = -1
        self.ended.callback(self.code)


class BrokerProcess:
    """
    C{twistd -n mqttx} on one SQLite database, started as often as a test
    wants, each time on C{tcp:0}: L{port} is the port the current process
    logged. A process still running at cleanup is killed.

    @ivar port: the port of the running (or last) process.
    """

    def __init__(
        self,
        case: TestCase,
        *,
        durability: str = "sync",
        commit_interval: float = 1.0,
        mqtt: dict[str, Any] | None = None,
    ) -> None:
        self.directory = FilePath(case.mktemp())
        self.directory.makedirs()
        self.database = self.directory.child("var").child("mqttx.db")
        persistence = {
            "backend": "sqlite",
            "path": self.database.path,
            "durability": durability,
            "commit_interval": commit_interval,
        }
        config = {
            "node": {"name": "durability"},
            "listeners": [
                {"name": "mqtt", "protocol": "mqtt", "endpoint": f"tcp:0:interface={HOST}"}
            ],
            "mqtt": {"max_queued_messages": 100_000, **(mqtt or {})},
            "persistence": persistence,
            "logging": {"format": "json"},
        }
        # JSON is YAML.
        self.config = self.directory.child("mqttx.yaml")
        self.config.setContent(json.dumps(config).encode())
        self.port = 0
        self.runs = 0
        self._output: _Output | None = None
        self._transport: IProcessTransport | None = None
        case.addCleanup(self.cleanup)

    @property
    def output(self) -> str:
        """What the current (or last) process wrote."""
        return "" if self._output is None else self._output.out.decode("utf-8", "replace")

    @property
    def running(self) -> bool:
        return self._output is not None and self._output.code is None

    def events(self) -> list[dict[str, Any]]:
        """The JSON log events of the current (or last) process."""
        events = []
        for line in self.output.splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    async def start(self) -> int:
        """Start a process and wait until it listens; return its port."""
        assert not self.running, "the broker is running already"
        self.runs += 1
        output = _Output()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in [CHECKOUT.path, env.get("PYTHONPATH", "")] if p
        )
        argv = [*TWISTD, "-n", "--pidfile=", "mqttx", "--config", self.config.path]
        self._output = output
        self._transport = cast(IReactorProcess, _reactor).spawnProcess(
            output, argv[0], argv, env=env, path=self.directory.path
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for event in self.events():
                if event.get("event_id") == "service.started":
                    match = _STARTED.search(str(event.get("addresses", "")))
                    if match is None:
                        raise FailTest(f"no mqtt address in {event!r}")
                    self.port = int(match.group(1))
                    return self.port
            if output.code is not None or time.monotonic() > deadline:
                raise FailTest(
                    f"broker run {self.runs} did not start (status {output.code}): {self.output}"
                )
            await pause(0.05)  # real-time: polling the child's log

    async def stop(self) -> None:
        """SIGTERM, and check the process shuts down in order and exits 0."""
        assert self._transport is not None and self._output is not None
        self._transport.signalProcess("TERM")
        code = await self._ended(STOP_TIMEOUT)
        if code != 0 or "Traceback" in self.output:
            raise FailTest(f"broker run {self.runs} ended with {code} on SIGTERM: {self.output}")

    async def crash(self) -> None:
        """SIGKILL: the process ends at once, closing nothing itself."""
        assert self._transport is not None
        self._transport.signalProcess("KILL")
        await self._ended(STOP_TIMEOUT)

    async def restart(self) -> int:
        """L{stop}, then L{start}; return the new port."""
        await self.stop()
        return await self.start()

    async def _ended(self, timeout: float) -> int:
        output = self._output
        assert output is not None
        if output.code is None:
            waiting: Deferred[None] = Deferred()
            output.ended.addBoth(lambda _: None if waiting.called else waiting.callback(None))
            waiting.addTimeout(timeout, reactor)
            try:
                await waiting
            except TimeoutError:
                raise FailTest(
                    f"broker run {self.runs} still running after {timeout}s: {self.output}"
                ) from None
        assert output.code is not None
        return output.code

    async def cleanup(self) -> None:
        if self.running and self._transport is not None:
            self._transport.signalProcess("KILL")
            await self._ended(STOP_TIMEOUT)


class DurabilityTestCase(TestCase):
    """A test with a L{BrokerProcess}, started in C{setUp}."""

    #: Generous for one test with two or three broker starts.
    timeout = 60
    durability: ClassVar[str] = "sync"
    commit_interval: ClassVar[float] = 1.0

    broker: BrokerProcess

    async def setUp(self) -> None:  # type: ignore[override]
        self.broker = BrokerProcess(
            self, durability=self.durability, commit_interval=self.commit_interval
        )
        await self.broker.start()

    def paho(self, client_id: str, version: Any = V311, **kwargs: Any) -> PahoClient:
        """A paho client of the running broker (not yet connected)."""
        return PahoClient(self, self.broker.port, client_id, version, **kwargs)

    async def resume(self, client_id: str, version: Any, **kwargs: Any) -> PahoClient:
        """
        Reconnect to a persistent session: the broker must have it, Session
        Present 1 [MQTT-3.2.2-2].
        """
        client = self.paho(client_id, version, clean=False, **kwargs)
        ack = await client.connect()
        self.assertEqual(
            (ack.reason_code, ack.session_present), (0, True), f"CONNACK for {client_id!r}"
        )
        return client

    async def persistent_subscriber(
        self, client_id: str, version: Any, topics: list[tuple[str, int]], **kwargs: Any
    ) -> None:
        """Subscribe a persistent session to C{topics}, then disconnect it."""
        client = self.paho(client_id, version, clean=False, **kwargs)
        ack = await client.connect()
        self.assertEqual(ack.reason_code, 0)
        self.assertEqual(await client.subscribe_many(topics), [qos for _, qos in topics])
        await client.disconnect()

    async def publisher(self, client_id: str, version: Any = V311) -> PahoClient:
        client = self.paho(client_id, version)
        ack = await client.connect()
        self.assertEqual(ack.reason_code, 0)
        return client

    async def raw_session(
        self, client_id: str, level: int, topics: list[tuple[str, int]]
    ) -> RawClient:
        """A raw client resuming or starting a persistent session, subscribed to C{topics}."""
        raw = await open_raw(self, self.broker.port, level)
        raw.send(
            connect_packet(
                level, client_id, clean=False, session_expiry=300 if level == 5 else None
            )
        )
        ack = await raw.expect(ConnAck)
        self.assertEqual(ack.reason_code, 0)
        raw.send(Subscribe(1, tuple(Subscription(t, q) for t, q in topics)))
        self.assertEqual(await raw.expect(SubAck), SubAck(1, tuple(q for _, q in topics)))
        return raw


# 1. Restarts: SIGTERM, then start again on the same database.


class RestartTests(DurabilityTestCase):
    """
    What a broker stopped with SIGTERM kept in its database is there when it
    starts again: persistent sessions with their queued and in-flight
    messages, retained messages and pending delayed wills; what expired
    while it was down is gone.
    """

    async def _queued_survive(self, version: Any, **session: Any) -> list[Received]:
        """
        A persistent subscriber at QoS 1 and 2 is offline; 20 messages are
        published to it (MQTT 5 ones with L{PROPERTIES}); the broker
        restarts; the subscriber resumes and gets all 20 in order.
        """
        await self.persistent_subscriber(
            "durable", version, [("dur/one", 1), ("dur/two", 2)], **session
        )
        pub = await self.publisher("dur-pub", version)
        props = PROPERTIES if version == V5 else {}
        sent = [
            (f"dur/{'two' if i % 2 else 'one'}", b"message %d" % i, 1 + i % 2) for i in range(20)
        ]
        for topic, payload, qos in sent:
            self.assertEqual(await pub.publish(topic, payload, qos, **props), 0)
        await pub.disconnect()

        await self.broker.restart()
        sub = await self.resume("durable", version, **session)
        got = await sub.messages.get(len(sent))
        # paho hands a QoS 2 message over at PUBREL, after QoS 1 ones that
        # followed it: compare the order by topic and QoS [MQTT-4.6.0-6].
        for qos in (1, 2):
            self.assertEqual(
                [(m.topic, m.payload, m.qos, m.dup) for m in got if m.qos == qos],
                [(*s, False) for s in sent if s[2] == qos],
            )
        await sub.messages.expect_nothing()
        return got

    async def test_v311_queued_messages_survive_a_restart(self) -> None:
        """
        MQTT 3.1.1, Clean Session 0: the session, its subscriptions and its
        queued QoS 1 and 2 messages [MQTT-3.1.2-4] [MQTT-3.1.2-5] outlive a
        SIGTERM restart; the client resumes with Session Present 1
        [MQTT-3.2.2-2] and gets every message, in order (section 4.6).
        """
        await self._queued_survive(V311)

    async def test_v5_queued_messages_and_properties_survive_a_restart(self) -> None:
        """
        MQTT 5, Session Expiry Interval > 0 [MQTT-3.1.2-23]: as for 3.1.1,
        and each message keeps its properties, unaltered and user
        properties in order [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20].
        """
        got = await self._queued_survive(V5, session_expiry=300)
        for message in got:
            self.assertEqual(_props_of(message), PROPERTIES)

    async def _in_flight_resent(self, level: int) -> None:
        """
        A raw subscriber that acknowledges nothing holds a QoS 1 message and
        a QoS 2 message unacknowledged, and a second QoS 2 message for which
        it sent PUBREC but no PUBCOMP; the broker restarts. On resuming, the
        broker sends the two PUBLISH packets again with DUP 1 and their
        original packet identifiers [MQTT-4.4.0-1] [MQTT-3.3.1-1], in their
        original order [MQTT-4.6.0-1], and the PUBREL again.
        """
        version = V5 if level == 5 else V311
        raw = await self.raw_session("holder", level, [("fly/#", 2)])
        pub = await self.publisher("fly-pub", version)
        await pub.publish("fly/released", b"released", 2)
        first = await raw.expect(Publish)
        raw.send(PubRec(first.packet_id or 0))
        self.assertEqual(await raw.expect(PubRel), PubRel(first.packet_id or 0))
        await pub.publish("fly/one", b"at least once", 1)
        await pub.publish("fly/two", b"exactly once", 2)
        held = [await raw.expect(Publish), await raw.expect(Publish)]
        self.assertEqual(
            [(p.topic, p.qos, p.dup) for p in held], [("fly/one", 1, False), ("fly/two", 2, False)]
        )

        await self.broker.stop()
        await raw.expect_closed()
        await self.broker.start()
        again = await open_raw(self, self.broker.port, level)
        again.send(
            connect_packet(level, "holder", clean=False, session_expiry=300 if level == 5 else None)
        )
        ack = await again.expect(ConnAck)
        self.assertEqual((ack.reason_code, ack.session_present), (0, True))
        resent = [await again.packets.get_one() for _ in range(3)]
        publishes = [p for p in resent if isinstance(p, Publish)]
        self.assertEqual(publishes, [replace_dup(p) for p in held])
        self.assertIn(PubRel(first.packet_id or 0), resent)
        for p in publishes:
            again.send(PubAck(p.packet_id or 0) if p.qos == 1 else PubRec(p.packet_id or 0))
        again.send(PubComp(first.packet_id or 0))
        self.assertEqual(await again.expect(PubRel), PubRel(held[1].packet_id or 0))
        again.send(PubComp(held[1].packet_id or 0), Disconnect())
        await again.expect_closed()
        # Nothing more was due.
        self.assertEqual(again.packets.take_all(), [])

    async def test_v311_in_flight_messages_resent_with_dup_after_a_restart(self) -> None:
        """See L{_in_flight_resent}; MQTT 3.1.1."""
        await self._in_flight_resent(4)

    async def test_v5_in_flight_messages_resent_with_dup_after_a_restart(self) -> None:
        """See L{_in_flight_resent}; MQTT 5."""
        await self._in_flight_resent(5)

    async def test_retained_messages_survive_a_restart(self) -> None:
        """
        Retained messages [MQTT-3.3.1-5] survive a restart with their
        properties [MQTT-3.3.2-17] [MQTT-3.3.2-20], and their Message Expiry
        Interval keeps running while the broker is down: one still valid is
        sent with the interval minus the time it waited [MQTT-3.3.2-6]; one
        that expired meanwhile is not sent [MQTT-3.3.2-5].
        """
        pub = await self.publisher("ret-pub", V5)
        published = time.monotonic()
        await pub.publish(
            "ret/long", b"still here", 1, retain=True, MessageExpiryInterval=300, **PROPERTIES
        )
        await pub.publish("ret/short", b"expires", 1, retain=True, MessageExpiryInterval=1)
        await pub.publish("ret/forever", b"no expiry", 2, retain=True)
        await pub.disconnect()

        await self.broker.stop()
        # real-time: the short expiry passes while the broker is down.
        await pause(max(0.0, published + 1.5 - time.monotonic()))
        await self.broker.start()
        sub = self.paho("ret-sub", V5)
        await sub.connect()
        self.assertEqual(await sub.subscribe("ret/#", 2), 2)
        got = {m.topic: m for m in await sub.messages.get(2)}
        await sub.messages.expect_nothing()
        self.assertEqual(sorted(got), ["ret/forever", "ret/long"])
        kept = got["ret/long"]
        self.assertEqual((kept.payload, kept.qos, kept.retain), (b"still here", 1, True))
        self.assertEqual(_props_of(kept), PROPERTIES)
        expiry = getattr(kept.properties, "MessageExpiryInterval", None)
        assert expiry is not None
        self.assertTrue(290 <= expiry < 300, f"Message Expiry Interval {expiry}")
        forever = got["ret/forever"]
        self.assertEqual((forever.payload, forever.qos, forever.retain), (b"no expiry", 2, True))
        self.assertIsNone(getattr(forever.properties, "MessageExpiryInterval", None))

    async def test_delayed_will_fires_after_a_restart_at_its_due_time(self) -> None:
        """
        A will waiting for its Will Delay Interval when the broker stopped is
        published by the restarted broker when the delay is over, not before
        (section 3.1.3.2, [MQTT-3.1.3-9]; the Server "MAY defer publication
        of Will Messages until a subsequent restart", section 3.1.2.5).
        """
        delay = 3
        await self.persistent_subscriber("watcher", V5, [("will/t", 1)], session_expiry=300)
        doomed = self.paho(
            "doomed",
            V5,
            clean=False,
            session_expiry=300,
            will=WillSpec("will/t", b"gone", 1, delay=delay, user_properties=(("why", "crash"),)),
        )
        await doomed.connect()
        await doomed.drop()
        dropped = time.monotonic()
        # A full CONNECT/CONNACK round trip started after the FIN reached the
        # broker: by its CONNACK the broker has handled the FIN.
        probe = await self.publisher("probe")
        await probe.disconnect()

        await self.broker.restart()
        restarted = time.monotonic()
        watcher = await self.resume("watcher", V5, session_expiry=300)
        [will] = await watcher.messages.get(timeout=delay + TIMEOUT)
        arrived = time.monotonic()
        self.assertEqual(
            (will.topic, will.payload, will.user_properties()),
            ("will/t", b"gone", [("why", "crash")]),
        )
        self.assertGreaterEqual(arrived - dropped, delay - 0.1, "will published before its delay")
        self.assertLessEqual(
            arrived - dropped, max(delay, restarted - dropped) + 2.0, "will published late"
        )

    async def test_session_that_expired_while_down_is_gone(self) -> None:
        """
        A session whose Session Expiry Interval ran out while the broker was
        down is gone after the restart: Session Present 0 [MQTT-3.2.2-3],
        its subscriptions too. One with a longer expiry is still there
        [MQTT-3.2.2-2].
        """
        await self.persistent_subscriber("brief", V5, [("exp/t", 1)], session_expiry=1)
        await self.persistent_subscriber("lasting", V5, [("exp/t", 1)], session_expiry=300)
        gone = time.monotonic()
        await self.broker.stop()
        # real-time: the brief session's expiry passes while the broker is down.
        await pause(max(0.0, gone + 1.5 - time.monotonic()))
        await self.broker.start()
        pub = await self.publisher("exp-pub", V5)
        await pub.publish("exp/t", b"after", 1)
        brief = self.paho("brief", V5, clean=False, session_expiry=300)
        ack = await brief.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, False))
        await brief.messages.expect_nothing()
        lasting = await self.resume("lasting", V5, session_expiry=300)
        [got] = await lasting.messages.get()
        self.assertEqual(got.payload, b"after")


def replace_dup(packet: Publish) -> Publish:
    """C{packet} as sent again: DUP 1 [MQTT-3.3.1-1]."""
    return dataclasses.replace(packet, dup=True)


# 3. durability: batch, and a clean stop.


class BatchStopTests(DurabilityTestCase):
    """
    With C{durability: batch}, acknowledgements do not wait for the disk,
    and the writer commits every C{commit_interval} seconds; a clean stop
    commits what is pending as the store closes.
    """

    durability = "batch"
    #: Far longer than the test: only the flush on close can commit.
    commit_interval = 30.0

    async def test_sigterm_loses_nothing_acknowledged(self) -> None:
        """
        Messages acknowledged within the last commit interval, queued for
        an offline persistent session [MQTT-3.1.2-5], and a retained message
        [MQTT-3.3.1-5], are all there after a SIGTERM restart.
        """
        await self.persistent_subscriber("batch-sub", V5, [("batch/#", 2)], session_expiry=300)
        pub = await self.publisher("batch-pub", V5)
        payloads = [b"batch %d" % i for i in range(50)]
        self.assertEqual(await pub.publish_many("batch/one", payloads[:25], 1), [0] * 25)
        self.assertEqual(await pub.publish_many("batch/two", payloads[25:], 2), [0] * 25)
        await pub.publish("kept/batch", b"retained", 1, retain=True)
        await pub.disconnect()

        await self.broker.restart()
        sub = await self.resume("batch-sub", V5, session_expiry=300)
        got = await sub.messages.get(len(payloads))
        # By topic and QoS, in order [MQTT-4.6.0-6] (see _queued_survive).
        self.assertEqual([m.payload for m in got if m.qos == 1], payloads[:25])
        self.assertEqual([m.payload for m in got if m.qos == 2], payloads[25:])
        await sub.messages.expect_nothing()
        late = self.paho("late", V5)
        await late.connect()
        await late.subscribe("kept/batch", 1)
        [kept] = await late.messages.get()
        self.assertEqual((kept.payload, kept.retain), (b"retained", True))


# 2. The crash test: SIGKILL while publishers publish, with durability sync.


PUBLISHERS = 4
#: QoS 1/2 messages each fast publisher keeps in flight.
WINDOW = 32


def make_payload(publisher: int, seq: int, qos: int) -> bytes:
    """Publisher id, sequence number, QoS and filler, then a checksum of all of them."""
    body = b"%d:%d:%d:" % (publisher, seq, qos) + bytes((seq + i) % 256 for i in range(48))
    return body + b"|" + hashlib.sha256(body).hexdigest()[:16].encode()


def check_payload(payload: bytes) -> tuple[int, int, int] | None:
    """(publisher, seq, QoS) of a well-formed payload; None if corrupted."""
    body, _, checksum = payload.rpartition(b"|")
    if hashlib.sha256(body).hexdigest()[:16].encode() != checksum:
        return None
    publisher, seq, qos = body.split(b":", 3)[:3]
    return int(publisher), int(seq), int(qos)


class FastPublisher(Protocol):
    """
    A raw publisher as fast as one connection can be: it keeps L{WINDOW}
    QoS 1 and 2 messages (alternating) in flight, answers PUBREC with
    PUBREL, and records each message it wrote (L{sent}) and each whose
    PUBACK or PUBCOMP it saw with a success code (L{acked}).

    @ivar sent: payloads written, by sequence number.
    @ivar acked: sequence numbers whose QoS flow completed.
    @ivar refused: acknowledgements with an error code or an unknown id.
    @ivar ready: fires on CONNACK.
    @ivar lost: fires when the connection is gone.
    """

    def __init__(self, number: int, level: int) -> None:
        self.number = number
        self.level = level
        self.sent: dict[int, bytes] = {}
        self.acked: set[int] = set()
        self.refused: list[Packet] = []
        self.running = True
        self.ready: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self._decoder = Decoder(protocol_level=level)
        self._pending: dict[int, int] = {}
        self._next = 0
        self._topic = f"crash/{number}"

    def connectionMade(self) -> None:
        self._write(connect_packet(self.level, f"fast-{self.number}", keep_alive=0))

    def dataReceived(self, data: bytes) -> None:
        for packet in self._decoder.feed(data):
            if isinstance(packet, ConnAck):
                self.ready.callback(None)
                for _ in range(WINDOW):
                    self._publish()
            elif isinstance(packet, PubRec):
                if packet.reason_code >= 0x80:
                    self.refused.append(packet)
                    self._pending.pop(packet.packet_id, None)
                else:
                    self._write(PubRel(packet.packet_id))
            elif isinstance(packet, PubAck | PubComp):
                seq = self._pending.pop(packet.packet_id, None)
                if seq is None or packet.reason_code != 0:
                    self.refused.append(packet)
                else:
                    self.acked.add(seq)
                self._publish()

    def _publish(self) -> None:
        if not self.running or self.transport is None:
            return
        seq = self._next
        self._next += 1
        qos = 1 + seq % 2
        pid = seq % 65535 + 1
        payload = make_payload(self.number, seq, qos)
        self.sent[seq] = payload
        self._pending[pid] = seq
        self._write(Publish(self._topic, payload, qos, packet_id=pid))

    def _write(self, packet: Packet) -> None:
        assert self.transport is not None
        self.transport.write(encode(packet, self.level))

    def connectionLost(self, reason: Failure = _CONNECTION_DONE) -> None:
        self.running = False
        self.lost.callback(None)

    def abort(self) -> None:
        if self.transport is not None and not self.lost.called:
            cast(ITCPTransport, self.transport).abortConnection()


def _seed() -> int:
    chosen = os.environ.get("MQTTX_CRASH_SEED")
    return int(chosen) if chosen else random.SystemRandom().randrange(2**32)


SEED = _seed()

#: The persistent subscribers: client id, version, session parameters.
SUBSCRIBERS: list[tuple[str, Any, dict[str, Any]]] = [
    ("crash-sub-311", V311, {}),
    ("crash-sub-5", V5, {"session_expiry": 600}),
]


class CrashTests(DurabilityTestCase):
    """
    The heart of issue 5: with C{durability: sync}, a QoS 1/2 message is
    acknowledged only once it and its place in every persistent session's
    queue are on disk, so killing the broker loses nothing acknowledged.
    """

    async def _crash(self, iteration: int) -> None:
        """
        Persistent subscribers (3.1.1 and 5) are offline; L{PUBLISHERS} raw
        publishers (3.1.1 and 5) publish QoS 1 and 2 messages as fast as
        they can; the broker is killed with SIGKILL at a random moment,
        once a random number of messages were acknowledged and a random
        time later. After a restart on the same database each subscriber
        resumes its session (Session Present 1 [MQTT-3.2.2-2]) and drains
        it. For any kill point:

          - every message whose PUBACK or PUBCOMP a publisher saw is
            delivered: QoS 1 at least once (section 4.3.2), QoS 2 exactly
            once (section 4.3.3), and no QoS 2 message is delivered twice
            even if its publisher never saw the PUBCOMP;
          - every payload delivered is one a publisher sent, on its topic
            and at its QoS, with an intact checksum;
          - each publisher's messages of one QoS arrive in the order it
            sent them [MQTT-4.6.0-6] (paho hands QoS 2 messages over at
            PUBREL, so QoS 1 and 2 interleave differently).
        """
        seed = SEED + iteration
        rng = random.Random(seed)
        threshold = rng.randint(1, 400)
        delay = rng.uniform(0.0, 0.3)
        log.info(
            "crash test iteration {iteration}: seed {seed}, kill after {threshold} acks and {delay:.3f}s",
            iteration=iteration,
            seed=seed,
            threshold=threshold,
            delay=delay,
        )
        where = f"seed {seed} (MQTTX_CRASH_SEED={SEED}, iteration {iteration})"
        for client_id, version, session in SUBSCRIBERS:
            await self.persistent_subscriber(client_id, version, [("crash/#", 2)], **session)

        publishers = [FastPublisher(n, 5 if n % 2 else 4) for n in range(PUBLISHERS)]
        endpoint = TCP4ClientEndpoint(
            cast(IReactorTCP, _reactor), HOST, self.broker.port, timeout=int(TIMEOUT)
        )
        for p in publishers:
            self.addCleanup(p.abort)
            await connectProtocol(endpoint, p)
            await p.ready

        def acked() -> int:
            return sum(len(p.acked) for p in publishers)

        deadline = time.monotonic() + TIMEOUT
        while acked() < threshold:
            if time.monotonic() > deadline:
                self.fail(f"{where}: only {acked()} of {threshold} acknowledged in {TIMEOUT}s")
            await pause(0.005)  # real-time: the publishers publish meanwhile
        await pause(delay)  # real-time: the random kill point
        await self.broker.crash()
        for p in publishers:
            await p.lost
        self.assertEqual([p.refused for p in publishers], [[]] * PUBLISHERS, where)
        self.assertGreaterEqual(acked(), threshold, where)

        await self.broker.start()
        total_acked = acked()
        for client_id, version, session in SUBSCRIBERS:
            sub = await self.resume(client_id, version, **session)
            got = await self._drain(sub, publishers, where)
            self._check(got, publishers, f"{where}, {client_id}")
        log.info(
            "crash test iteration {iteration}: {sent} sent, {acked} acknowledged before the kill",
            iteration=iteration,
            sent=sum(len(p.sent) for p in publishers),
            acked=total_acked,
        )

    async def _drain(
        self, sub: PahoClient, publishers: list[FastPublisher], where: str
    ) -> list[Received]:
        """
        What C{sub} receives until it has every acknowledged message and
        then nothing more for a while.
        """
        missing = {(p.number, seq) for p in publishers for seq in p.acked}
        got: list[Received] = []
        last = time.monotonic()
        deadline = last + 15.0
        while True:
            new = sub.messages.take_all()
            now = time.monotonic()
            if new:
                last = now
                got.extend(new)
                for m in new:
                    ids = check_payload(m.payload)
                    if ids is not None:
                        missing.discard(ids[:2])
            elif not missing and now - last > 0.5:
                return got
            if now > deadline:
                self.fail(
                    f"{where}: {len(missing)} acknowledged messages not delivered, e.g. {sorted(missing)[:5]}"
                )
            await pause(0.02)  # real-time: paho's thread receives meanwhile

    def _check(self, got: list[Received], publishers: list[FastPublisher], where: str) -> None:
        counts: Counter[tuple[int, int]] = Counter()
        order: dict[tuple[int, int], list[int]] = {
            (p.number, q): [] for p in publishers for q in (1, 2)
        }
        for m in got:
            ids = check_payload(m.payload)
            if ids is None:
                self.fail(f"{where}: corrupted payload {m.payload!r}")
            number, seq, qos = ids
            sent = publishers[number].sent.get(seq) if number < len(publishers) else None
            self.assertEqual(m.payload, sent, f"{where}: delivered but never published")
            self.assertEqual((m.topic, m.qos), (f"crash/{number}", qos), where)
            if not counts[(number, seq)]:
                order[(number, qos)].append(seq)
            counts[(number, seq)] += 1
        for p in publishers:
            for seq in p.acked:
                self.assertGreaterEqual(
                    counts[(p.number, seq)], 1, f"{where}: acknowledged message lost"
                )
        twice = sorted(k for k, n in counts.items() if n > 1 and k[1] % 2 == 1)  # odd seq: QoS 2
        self.assertEqual(twice, [], f"{where}: QoS 2 messages delivered more than once")
        for (number, qos), seqs in order.items():
            self.assertEqual(
                seqs, sorted(seqs), f"{where}: publisher {number}'s QoS {qos} messages out of order"
            )

    async def test_crash_1(self) -> None:
        """See L{_crash}: the first kill point."""
        await self._crash(1)

    async def test_crash_2(self) -> None:
        """See L{_crash}: the second kill point."""
        await self._crash(2)

    async def test_crash_3(self) -> None:
        """See L{_crash}: the third kill point."""
        await self._crash(3)
