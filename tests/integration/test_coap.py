"""
Integration tests of the CoAP bridge: a real broker with a CoAP listener on
loopback UDP, aiocoap as the CoAP client (its command-line client, and
L{coap_observe} for observations, as child processes: aiocoap runs on
asyncio) and paho-mqtt on the MQTT side.
"""

from __future__ import annotations

import json
import sys
from typing import Any, cast

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import capturedLogs
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from mqttx.broker.bridge import Bridge
from mqttx.config import CoAPConfig, CoAPRule, parse_config
from mqttx.service import MQTTXService
from mqttx.transports.coap.codec import Code, Message, MessageType, decode, encode, path_options
from mqttx.transports.coap.messages import MessageLayer
from mqttx.transports.coap.protocol import CoAPDatagramProtocol

from .helpers import (
    HOST,
    QUIET,
    TIMEOUT,
    V5,
    IntegrationTestCase,
    RunningProcess,
    pause,
    reactor,
    spawn,
)

udp = cast(IReactorUDP, _reactor)

OBSERVER = FilePath(__file__).sibling("coap_observe.py").path
EXAMPLE = FilePath(__file__).parent().parent().parent().descendant(["etc", "mqttx.yaml"])


class _Datagrams(DatagramProtocol):
    """A raw UDP client: what arrives goes to a list, and wakes a waiter."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append(decode(datagram))
        for count, d in list(self._waiting):
            if len(self.received) >= count:
                self._waiting.remove((count, d))
                d.callback(None)

    async def wait(self, count: int) -> list[Message]:
        if len(self.received) < count:
            d: Deferred[None] = Deferred()
            self._waiting.append((count, d))
            d.addTimeout(TIMEOUT, reactor)
            await d
        return self.received


class CoAPBridgeTests(IntegrationTestCase):
    """aiocoap against the CoAP listener, paho on the MQTT side."""

    version = V5

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        # A short retransmission schedule (give-up after about 0.7 s), so
        # an observer that went away is found out within the test.
        layer = MessageLayer(ack_timeout=0.1, max_retransmit=2)
        config = CoAPConfig(rules=(CoAPRule("127.0.0.0/8"),), confirmable_every=2)
        self.coap = CoAPDatagramProtocol(Bridge(self.broker, reactor), "coap", config, reactor, layer=layer)
        self.udp: IListeningPort = udp.listenUDP(0, self.coap, HOST, 65535)
        self.addCleanup(self._stop_coap)
        self.base = f"coap://{HOST}:{self.udp.getHost().port}"  # type: ignore[attr-defined]

    async def _stop_coap(self) -> None:
        self.coap.stop()
        stopped = self.udp.stopListening()
        if stopped is not None:
            await stopped

    def client(self, *args: str) -> RunningProcess:
        """aiocoap's command-line client (aiocoap-client) with C{args}."""
        return spawn(self, sys.executable, ["-m", "aiocoap.cli.client", *args])

    async def test_post_seen_by_paho(self) -> None:
        """A CoAP POST is published: a paho subscriber gets it with its content type."""
        sub = await self.subscriber("sub", "sensors/+/temp", 1)
        out, err, code = await self.client(
            "-m", "POST", "--content-format", "application/json", "--payload", '{"t": 21.5}',
            f"{self.base}/ps/sensors/k1/temp?qos=1",
        ).finish()
        self.assertEqual(code, 0, err)
        [message] = sub.messages.wait()
        self.assertEqual((message.topic, message.payload, message.qos), ("sensors/k1/temp", b'{"t": 21.5}', 1))
        self.assertEqual(getattr(message.properties, "ContentType", None), "application/json")

    async def test_get_retained_set_by_paho(self) -> None:
        """GET returns the retained message a paho client set; a topic without one is 4.04."""
        pub = await self.connected("pub")
        await pub.publish("state/lamp", b"on", qos=1, retain=True)
        out, err, code = await self.client(f"{self.base}/ps/state/lamp").finish()
        self.assertEqual((out, code), ("on", 0), err)
        out, err, code = await self.client(f"{self.base}/ps/state/none").finish()
        self.assertEqual(code, 1)
        self.assertIn("4.04", err)

    async def test_observe_paho_publishes_then_cancel(self) -> None:
        """
        An aiocoap observer of a wildcard filter receives messages a paho
        client publishes, in order, with increasing Observe numbers; it
        cancels (aiocoap forgets the observation), and once it is gone the
        next confirmable notification goes unacknowledged and the
        observation ends on the server.
        """
        observer = spawn(self, sys.executable, [OBSERVER, f"{self.base}/ps/room/%2B", "3", "0"])
        await observer.wait_for_output(b'"kind": "response"')
        pub = await self.connected("pub")
        for i in range(3):
            await pub.publish("room/a", b"m%d" % i, qos=1)
        out, err, code = await observer.finish()
        self.assertEqual(code, 0, err)
        lines = [json.loads(line) for line in out.splitlines()]
        notes = [line for line in lines if line.get("kind") == "notification"]
        self.assertEqual([bytes.fromhex(n["payload"]) for n in notes], [b"m0", b"m1", b"m2"])
        self.assertEqual({tuple(n["location"]) for n in notes}, {("room", "a")})
        numbers = [lines[0]["observe"], *[n["observe"] for n in notes]]
        self.assertEqual(numbers, sorted(set(numbers)))
        self.assertEqual(lines[-1], {"cancelled": True})
        self.assertEqual(len(self.coap.observations), 1)
        # Every second notification is confirmable: the observer's socket is closed.
        await pub.publish("room/a", b"gone", qos=1)
        await self.wait_until(lambda: not self.coap.observations, "observation dropped")

    async def test_observe_large_messages(self) -> None:
        """
        A retained message and a notification over the block size reach an
        aiocoap observer whole: it fetches the later blocks (Block2) itself.
        """
        retained, published = b"r" * 3000, bytes(range(256)) * 12
        pub = await self.connected("pub")
        await pub.publish("big/obs", retained, qos=1, retain=True)
        observer = spawn(self, sys.executable, [OBSERVER, f"{self.base}/ps/big/obs", "1", "0"])
        await observer.wait_for_output(b'"kind": "response"')
        await pub.publish("big/obs", published, qos=1)
        out, err, code = await observer.finish()
        self.assertEqual(code, 0, err)
        response, note = (json.loads(line) for line in out.splitlines()[:2])
        self.assertEqual(bytes.fromhex(response["payload"]), retained)
        self.assertEqual(bytes.fromhex(note["payload"]), published)

    async def test_block1_post_5k(self) -> None:
        """A 5 KB POST goes in Block1 blocks; paho sees the whole payload once."""
        sub = await self.subscriber("sub", "big/in", 0)
        body = bytes(range(256)) * 20
        path = FilePath(self.mktemp())
        path.setContent(body)
        upload = self.client("-m", "POST", "--payload", f"@{path.path}", f"{self.base}/ps/big/in")
        out, err, code = await upload.finish()
        self.assertEqual(code, 0, err)
        [message] = sub.messages.wait()
        self.assertEqual(message.payload, body)
        await pause(QUIET)  # real-time: a second copy would arrive within it
        self.assertEqual(sub.messages.take_all(), [])

    async def test_block2_get_5k(self) -> None:
        """A 5 KB retained message set by paho comes whole to a CoAP GET (Block2)."""
        body = b"0123456789" * 512
        pub = await self.connected("pub")
        await pub.publish("big/out", body, qos=1, retain=True)
        out, err, code = await self.client(f"{self.base}/ps/big/out").finish()
        self.assertEqual((code, out.encode()), (0, body), err)

    async def test_duplicate_con_one_publish(self) -> None:
        """The same CON datagram sent twice is published once and answered twice alike."""
        sub = await self.subscriber("sub", "dup", 0)
        raw = _Datagrams()
        port = udp.listenUDP(0, raw, HOST, 65535)
        self.addCleanup(port.stopListening)
        datagram = encode(Message(MessageType.CON, Code.POST, 0x4242, b"dd", tuple(path_options(["ps", "dup"])), b"x"))
        target = (HOST, self.udp.getHost().port)  # type: ignore[attr-defined]
        port.write(datagram, target)  # type: ignore[attr-defined]
        await raw.wait(1)
        port.write(datagram, target)  # type: ignore[attr-defined]
        first, second = await raw.wait(2)
        self.assertEqual((first.type, first.code, first.message_id), (MessageType.ACK, Code.CHANGED, 0x4242))
        self.assertEqual(second, first)
        [message] = sub.messages.wait()
        await pause(QUIET)  # real-time: a second publish would arrive within it
        self.assertEqual(sub.messages.take_all(), [])
        self.assertEqual(message.payload, b"x")


class ServiceTests(IntegrationTestCase):
    """A C{protocol: coap} listener in the configuration serves."""

    async def test_coap_listener_from_config(self) -> None:
        """
        MQTTXService starts a coap listener from C{udp:0:interface=127.0.0.1},
        logs where it listens, answers a POST, and stops.
        """
        config = parse_config(
            "persistence: {backend: memory}\n"
            "listeners:\n"
            "  - {name: coap, protocol: coap, endpoint: 'udp:0:interface=127.0.0.1'}\n",
            "test",
        )
        service = MQTTXService(config, _reactor)
        with capturedLogs() as events:
            service.startService()
            await service._starting  # type: ignore[misc]
        self.addCleanup(service.stopService)
        [started] = [e for e in events if e.get("event_id") == "listener.started"]
        self.assertEqual(started["protocol"], "coap")
        port = int(started["address"].rpartition(":")[2])
        raw = _Datagrams()
        client = udp.listenUDP(0, raw, HOST, 65535)
        self.addCleanup(client.stopListening)
        request = Message(MessageType.CON, Code.POST, 7, b"s", tuple(path_options(["ps", "svc"])), b"v")
        client.write(encode(request), (HOST, port))  # type: ignore[attr-defined]
        [answer] = await raw.wait(1)
        self.assertEqual(answer.code, Code.CHANGED)


class ExampleTests(SynchronousTestCase):
    def test_example_coap_listener(self) -> None:
        """
        The commented-out coap listener of etc/mqttx.yaml parses, spells out
        every key of a coap: block with its default.
        """
        lines = EXAMPLE.getContent().decode("utf-8").splitlines()
        start = lines.index("  # - name: coap")
        end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  #  "))
        block = "\n".join(line.replace("  # ", "  ", 1) for line in lines[start:end])
        [listener] = parse_config("listeners:\n" + block, "example").listeners
        self.assertEqual(listener.coap, CoAPConfig())
        for name in CoAPConfig.__dataclass_fields__:
            self.assertIn(f"#     {name}:", "\n".join(lines[start:end]))
