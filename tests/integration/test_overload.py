# -*- test-case-name: tests.integration.test_overload -*-
"""
Overload: a real C{twistd mqttx} process takes random and mutated bytes
from many connections at once while a well-behaved paho client keeps
publishing and receiving QoS 1 messages. None of its messages may be lost,
and the broker's resident memory must stay bounded.

Real time and real sockets: every wait is bounded and marked.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import tempfile
import threading
import time
import uuid

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from twisted.trial.unittest import SynchronousTestCase

from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import Connect, PingReq, Publish, Subscribe, Subscription

from ..test_twistd import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    TwistdProcess,
    free_port,
    mqttx_argv,
    wait_until,
)

#: Connections sending garbage at once.
FUZZERS = 50
#: real-time: how long they do.
FUZZ_SECONDS = 4.0
#: The most the broker's RSS may grow over its size once started, in kB.
#: Measured growth is a few MB (50 connections' buffers and sessions); a
#: limit that did not hold, such as a body buffered past max_packet_size,
#: shows up as tens of MB at once.
RSS_GROWTH_LIMIT_KB = 48 * 1024
#: The largest packet the broker takes in this test: 64 kB.
MAX_PACKET = 65_536


def rss_kb(pid: int) -> int:
    """The resident set size of process C{pid}, in kB, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def valid_packets(rng: random.Random) -> list[bytes]:
    """Well-formed packets to mutate: a CONNECT of each level, then traffic."""
    level = rng.choice((3, 4, 5))
    name = "MQIsdp" if level == 3 else "MQTT"
    cid = f"fz-{rng.getrandbits(32):08x}"
    return [
        encode(Connect(cid, level, name, True, rng.choice((0, 1, 5))), level),
        encode(Publish(f"fz/{rng.randrange(10)}", rng.randbytes(rng.randrange(64)), 0), level),
        encode(Publish("fz/q", b"x" * rng.randrange(200), 1, packet_id=rng.randrange(1, 65535)), level),
        encode(Subscribe(rng.randrange(1, 65535), (Subscription(rng.choice(("fz/#", "+/+", "#")), 1),)), level),
        encode(PingReq(), level),
    ]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Flip, drop, insert or repeat bytes of C{data}, or claim a huge length."""
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(6)
        if kind == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif kind == 1 and b:
            del b[rng.randrange(len(b))]
        elif kind == 2:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif kind == 3 and len(b) > 2:
            b = b[: rng.randrange(1, len(b))]
        elif kind == 4:
            b += bytes(b[: rng.randrange(1, 8)])
        else:
            # A fixed header announcing up to 256 MB.
            b = bytearray(bytes([rng.choice((0x30, 0x82, 0x10))]) + b"\xff\xff\xff\x7f") + b
    return bytes(b)


def fuzz(port: int, seed: int, deadline: float, stats: dict[str, int], lock: threading.Lock) -> None:
    """
    Until C{deadline}, connect and send random or mutated bytes; read and
    discard what comes back; reconnect when the broker closes.
    """
    rng = random.Random(seed)
    sent = connections = 0
    while time.monotonic() < deadline:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
        except OSError:
            time.sleep(0.01)  # real-time: the listen backlog is full
            continue
        connections += 1
        sock.setblocking(False)
        try:
            packets = valid_packets(rng)
            for _ in range(rng.randrange(1, 40)):
                if time.monotonic() >= deadline:
                    break
                mode = rng.randrange(4)
                if mode == 0:
                    chunk = rng.randbytes(rng.randrange(1, 512))
                elif mode == 1:
                    chunk = mutate(rng.choice(packets), rng)
                else:
                    # Valid bytes keep connections alive into deeper states.
                    chunk = packets[0] if mode == 2 else rng.choice(packets)
                try:
                    sock.send(chunk)
                    sent += len(chunk)
                    while sock.recv(65536):
                        pass
                except BlockingIOError:
                    pass
                except OSError:
                    break  # closed by the broker: what most garbage earns
                if rng.random() < 0.05:
                    time.sleep(0.01)  # real-time: a client pausing
        finally:
            sock.close()
    with lock:
        stats["bytes"] += sent
        stats["connections"] += connections


class OverloadTests(SynchronousTestCase):
    """The broker under garbage from many connections."""

    def test_garbage_does_not_hurt_a_good_client(self) -> None:
        """
        While 50 connections send random and mutated bytes for a few
        seconds, a paho client's QoS 1 messages all arrive, the broker
        stays up, and its RSS grows by less than L{RSS_GROWTH_LIMIT_KB}.
        """
        port = free_port()
        directory = tempfile.mkdtemp(prefix="mqttx-overload-")
        self.addCleanup(shutil.rmtree, directory, True)
        config = os.path.join(directory, "mqttx.yaml")
        with open(config, "w") as f:
            f.write(
                "listeners:\n"
                f"  - {{name: mqtt, protocol: mqtt, endpoint: 'tcp:{port}:interface=127.0.0.1'}}\n"
                "persistence: {backend: memory}\n"
                f"mqtt: {{max_packet_size: {MAX_PACKET}, connect_timeout: 2, max_connections: 500}}\n"
                "logging: {format: json, level: error}\n"
            )
        twistd = TwistdProcess(self, mqttx_argv(config))
        pid = twistd.process.pid

        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        self.assertTrue(wait_until(listening, START_TIMEOUT), twistd.stdout + twistd.stderr)

        received: list[bytes] = []
        got_all = threading.Event()
        expected: set[bytes] = set()
        topic = f"ok/{uuid.uuid4().hex}"

        def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
            received.append(bytes(message.payload))

        good = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"good-{uuid.uuid4().hex}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        good.on_message = on_message
        subscribed = threading.Event()
        good.on_subscribe = lambda *args: subscribed.set()
        good.connect("127.0.0.1", port, keepalive=30)
        good.loop_start()
        self.addCleanup(good.loop_stop)
        self.addCleanup(good.disconnect)
        _, mid = good.subscribe(topic, qos=1)
        self.assertTrue(wait_until(lambda: good.is_connected(), STOP_TIMEOUT))
        self.assertTrue(subscribed.wait(STOP_TIMEOUT), "no SUBACK")
        baseline = rss_kb(pid)

        stats = {"bytes": 0, "connections": 0}
        lock = threading.Lock()
        deadline = time.monotonic() + FUZZ_SECONDS
        threads = [
            threading.Thread(target=fuzz, args=(port, seed, deadline, stats, lock), daemon=True)
            for seed in range(FUZZERS)
        ]
        for thread in threads:
            thread.start()
        peak = baseline
        sent = 0
        while time.monotonic() < deadline:
            payload = b"m%d" % sent
            info = good.publish(topic, payload, qos=1)
            # real-time: the PUBACK of one message under load.
            info.wait_for_publish(STOP_TIMEOUT)
            self.assertTrue(info.is_published(), f"message {sent} not acknowledged")
            expected.add(payload)
            sent += 1
            peak = max(peak, rss_kb(pid))
        for thread in threads:
            thread.join(STOP_TIMEOUT)  # real-time: each ends at the deadline

        if wait_until(lambda: expected <= set(received), STOP_TIMEOUT):
            got_all.set()
        peak = max(peak, rss_kb(pid))
        self.assertIsNone(twistd.process.poll(), twistd.stdout + twistd.stderr)
        self.assertTrue(got_all.is_set(), f"lost {len(expected - set(received))} of {sent} messages")
        self.assertGreater(sent, 10)
        self.assertGreater(stats["connections"], FUZZERS)
        self.assertLess(
            peak - baseline,
            RSS_GROWTH_LIMIT_KB,
            f"RSS {baseline} kB -> {peak} kB; fuzz sent {stats}",
        )
        self.assertNotIn("Traceback", twistd.stdout + twistd.stderr)
        # Reported for whoever reads the test log.
        print(f"overload: {sent} messages, fuzz {stats}, RSS {baseline} -> {peak} kB")
        twistd.process.terminate()
        self.assertEqual(twistd.wait(STOP_TIMEOUT), 0, twistd.stdout + twistd.stderr)

