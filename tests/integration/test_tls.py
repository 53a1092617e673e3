# -*- test-case-name: tests.integration.test_tls -*-
"""
TLS and mutual TLS with real clients over loopback: paho-mqtt, Python's
C{ssl} module (for exact control of versions and of what follows the
handshake) and Debian's C{mosquitto_pub} / C{mosquitto_sub}.
"""

from __future__ import annotations

import signal
import socket
import ssl
from collections.abc import Sequence
from typing import Any, ClassVar

from cryptography import x509
from twisted.internet.threads import deferToThread
from twisted.logger import LogEvent, capturedLogs
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from mqttx.auth.acl import build_authorizer
from mqttx.config import TLSConfig
from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import Connect
from mqttx.transports.tls import ServerTLS
from tests.integration.helpers import (
    HOST,
    QUIET,
    TIMEOUT,
    V5,
    V311,
    IntegrationTestCase,
    pause,
    run_process,
    spawn,
    start_broker,
)
from tests.integration.test_mosquitto import MOSQUITTO_PUB, MOSQUITTO_SUB, STDBUF
from tests.test_twistd import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    TwistdProcess,
    free_port,
    mqttx_argv,
    read_packet,
    wait_until,
)
from tests.tlscerts import Authority, Issued, make_authority

#: A 3.1.1 CONNECT with client id "raw" and the CONNACK that accepts it.
RAW_CONNECT = encode(Connect("raw", 4, "MQTT", True, 60), 4)
CONNACK_OK = b"\x20\x02\x00\x00"


def client_context(
    trust: Authority,
    cert: Issued | None = None,
    *,
    maximum: ssl.TLSVersion | None = None,
    minimum: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A client's TLS context: trusting C{trust}, with C{cert} if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(trust.cert)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    if minimum is not None:
        # Old versions need OpenSSL's lowest security level on this side.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    return context


def mqtt_over_tls(port: int, context: ssl.SSLContext) -> bytes | Exception:
    """
    Connect with C{context}, send a CONNECT, and return what the broker
    answers (C{b""} if it closes), or the error that ended the attempt.
    Blocking: run it in a thread.
    """
    try:
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as raw, context.wrap_socket(
            raw, server_hostname=HOST
        ) as tls:
            tls.sendall(RAW_CONNECT)
            return tls.recv(4)
    except (OSError, ssl.SSLError) as e:
        return e


def failures(events: Sequence[LogEvent]) -> list[LogEvent]:
    return [e for e in events if e.get("event_id") == "tls.handshake_failed"]


class TLSTestCase(IntegrationTestCase):
    """A broker whose listener is TLS, with the C{tls:} block of L{tls}."""

    tls: ClassVar[dict[str, Any]] = {}
    acl: ClassVar[str | None] = None

    async def setUp(self) -> None:  # type: ignore[override]
        folder = FilePath(self.mktemp())
        self.ca = make_authority(folder)
        self.other_ca = make_authority(folder.child("other"), "other")
        self.server_cert = self.ca.issue("broker", server=True)
        # "CA" in a class's tls settings stands for the test's CA file.
        settings: dict[str, Any] = {k: self.ca.cert if v == "CA" else v for k, v in self.tls.items()}
        config = TLSConfig(self.server_cert.cert, self.server_cert.key, **settings)
        authorizer = None
        if self.acl is not None:
            acl_file = folder.child("acl")
            acl_file.setContent(self.acl.encode())
            authorizer = build_authorizer(acl_file.path, ())
        self.server = await start_broker(
            self, tls=ServerTLS(config, "mqtts"), authorizer=authorizer, **self.broker_config
        )

    def context(self, cert: Issued | None = None, **kwargs: Any) -> ssl.SSLContext:
        return client_context(self.ca, cert, **kwargs)

    async def attempt(self, context: ssl.SSLContext) -> bytes | Exception:
        result: bytes | Exception = await deferToThread(mqtt_over_tls, self.port, context)
        return result

    async def assertRefused(self, context: ssl.SSLContext, *reasons: str) -> None:
        """
        The broker refuses a client with C{context} during the handshake,
        and logs one line for it, naming the peer and the reason.
        """
        with capturedLogs() as events:
            result = await self.attempt(context)
            await self.wait_until(lambda: bool(failures(events)), "handshake failure logged")
            await pause(QUIET)
        self.assertNotEqual(result, CONNACK_OK)
        [event] = failures(events)
        self.assertTrue(event["peer"].startswith("127.0.0.1:"), event["peer"])
        self.assertEqual(event["listener"], "mqtts")
        for reason in reasons:
            self.assertIn(reason, event["reason"])


class ServerTLSTests(TLSTestCase):
    """A TLS listener without client certificates."""

    broker_config: ClassVar[dict[str, Any]] = {"connect_timeout": 1.0}

    async def round_trip(self, version: Any) -> None:
        context = self.context()
        subscriber = self.paho("sub", version, tls=context)
        self.assertEqual((await subscriber.connect()).reason_code, 0)
        self.assertEqual(await subscriber.subscribe("t/#", 1), 1)
        publisher = self.paho("pub", version, tls=context)
        self.assertEqual((await publisher.connect()).reason_code, 0)
        await publisher.publish("t/1", b"over tls", qos=1)
        [message] = await subscriber.messages.get()
        self.assertEqual((message.topic, message.payload), ("t/1", b"over tls"))

    async def test_paho_v311(self) -> None:
        """paho-mqtt (3.1.1) connects over TLS, subscribes, publishes and receives."""
        await self.round_trip(V311)

    async def test_paho_v5(self) -> None:
        """paho-mqtt (5.0) connects over TLS, subscribes, publishes and receives."""
        await self.round_trip(V5)

    async def test_client_trusting_another_ca(self) -> None:
        """
        A client that trusts another CA fails the handshake; the broker logs
        the failure once, with the client's address and OpenSSL's reason.
        """
        await self.assertRefused(client_context(self.other_ca), "unknown ca")
        self.assertEqual(self.broker.stats_for("mqtt").connects.total(), 0)

    async def test_tls_1_1_refused(self) -> None:
        """With C{min_version} 1.2 (the default), a client offering only TLS 1.1 is refused."""
        context = self.context(minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1)
        await self.assertRefused(context, "unsupported protocol")

    async def test_plain_mqtt_refused(self) -> None:
        """Plain MQTT sent to the TLS listener fails the handshake, logged once."""
        with capturedLogs() as events:
            client = await self.raw(4)
            client.send(Connect("plain", 4, "MQTT", True, 60))
            await client.expect_closed()
            await pause(QUIET)
        self.assertEqual(len(failures(events)), 1)

    async def test_half_open_closed_by_connect_timeout(self) -> None:
        """
        A peer that opens TCP and never sends a ClientHello is closed when
        the CONNECT timeout (1 s here) runs out: no half-open connection.
        """
        client = await self.raw(4)
        await pause(0.5)  # real-time: half the CONNECT timeout
        self.assertFalse(client.is_closed)
        await client.expect_closed(timeout=TIMEOUT)

    async def test_mosquitto_clients(self) -> None:
        """C{mosquitto_sub} and C{mosquitto_pub} with C{--cafile} work over TLS."""
        common = ["-h", HOST, "-p", str(self.port), "--cafile", self.ca.cert]
        sub = spawn(self, STDBUF[0], [*STDBUF[1:], MOSQUITTO_SUB, *common, "-t", "m/t", "-C", "1", "-v", "-d"])
        await sub.wait_for_output(b"SUBACK")
        _, err, status = await run_process(self, MOSQUITTO_PUB, [*common, "-t", "m/t", "-m", "hello"])
        self.assertEqual(status, 0, err)
        out, err, status = await sub.finish()
        self.assertEqual(status, 0, err)
        self.assertIn("m/t hello", out)


class TLS13Tests(TLSTestCase):
    """A listener with C{min_version: "1.3"}."""

    tls: ClassVar[dict[str, Any]] = {"min_version": "1.3"}

    async def test_tls_1_2_refused(self) -> None:
        """A client offering at most TLS 1.2 is refused; a TLS 1.3 one is served."""
        await self.assertRefused(self.context(maximum=ssl.TLSVersion.TLSv1_2), "unsupported protocol")
        self.assertEqual(await self.attempt(self.context()), CONNACK_OK)


class MutualTLSTests(TLSTestCase):
    """A C{require_client_cert} listener."""

    tls: ClassVar[dict[str, Any]] = {"ca": "CA", "require_client_cert": True}

    async def test_without_certificate_refused(self) -> None:
        """A client without a certificate is refused, logged once."""
        await self.assertRefused(self.context(), "certificate")

    async def test_certificate_of_another_ca_refused(self) -> None:
        """A client with a certificate from another CA is refused."""
        await self.assertRefused(self.context(self.other_ca.issue("mallory")), "certificate verify failed")

    async def test_expired_certificate_refused(self) -> None:
        """A client with an expired certificate from the CA is refused."""
        expired = self.ca.issue("late", valid_days=-1)
        await self.assertRefused(self.context(expired), "certificate verify failed")

    async def test_good_certificate(self) -> None:
        """A client with a certificate from the CA is served, with paho over 3.1.1 and 5.0."""
        self.assertEqual(await self.attempt(self.context(self.ca.issue("alice"))), CONNACK_OK)
        for version in (V311, V5):
            client = self.paho(f"paho-{version}", version, tls=self.context(self.ca.issue("bob")))
            self.assertEqual((await client.connect()).reason_code, 0)
            self.assertEqual(await client.subscribe("bob/t", 1), 1)

    async def test_mosquitto_clients_with_certificates(self) -> None:
        """C{mosquitto_pub}/C{mosquitto_sub} with C{--cafile}, C{--cert} and C{--key} work."""
        sub_cert, pub_cert = self.ca.issue("sub"), self.ca.issue("pub")

        def args(cert: Issued) -> list[str]:
            return ["-h", HOST, "-p", str(self.port), "--cafile", self.ca.cert, "--cert", cert.cert, "--key", cert.key]

        sub = spawn(self, STDBUF[0], [*STDBUF[1:], MOSQUITTO_SUB, *args(sub_cert), "-t", "m/t", "-C", "1", "-v", "-d"])
        await sub.wait_for_output(b"SUBACK")
        _, err, status = await run_process(self, MOSQUITTO_PUB, [*args(pub_cert), "-t", "m/t", "-m", "mutual"])
        self.assertEqual(status, 0, err)
        out, err, status = await sub.finish()
        self.assertEqual(status, 0, err)
        self.assertIn("m/t mutual", out)
        # Without a certificate, mosquitto_pub fails.
        _, err, status = await run_process(
            self,
            MOSQUITTO_PUB, ["-h", HOST, "-p", str(self.port), "--cafile", self.ca.cert, "-t", "m/t", "-m", "x"]
        )
        self.assertNotEqual(status, 0)


class IdentityTests(TLSTestCase):
    """
    C{use_identity_as_username}: the client certificate's common name is
    the user name, whatever CONNECT says, and ACLs use it.
    """

    tls: ClassVar[dict[str, Any]] = {"ca": "CA", "require_client_cert": True, "use_identity_as_username": True}
    acl: ClassVar[str | None] = "pattern readwrite users/%u/#\n"

    async def test_acl_sees_the_certificate_name(self) -> None:
        """
        A client whose certificate says "alice" and whose CONNECT says
        "mallory" (with a wrong password) is let in as alice: it may
        subscribe under users/alice/ and not under users/mallory/.
        """
        client = self.paho("cert-user", V5, tls=self.context(self.ca.issue("alice")))
        client.client.username_pw_set("mallory", "wrong")
        self.assertEqual((await client.connect()).reason_code, 0)
        self.assertEqual(await client.subscribe("users/alice/#", 1), 1)
        self.assertEqual(await client.subscribe("users/mallory/#", 1), 0x87)


class TwistdTLSTests(SynchronousTestCase):
    """
    A real C{twistd mqttx} with a TLS listener: SIGHUP reloads its
    certificate, and bad TLS files stop it at start with one line.
    """

    def write_config(self, port: int, cert: Issued) -> FilePath[str]:
        config = FilePath(self.mktemp())
        config.parent().makedirs(ignoreExistingDirectory=True)
        config.setContent(
            (
                "node: {name: twistd-test}\n"
                "listeners:\n"
                f'  - {{name: mqtts, protocol: mqtt, endpoint: "tcp:{port}:interface=127.0.0.1",'
                f" tls: {{cert: '{cert.cert}', key: '{cert.key}'}}}}\n"
                "persistence: {backend: memory}\n"
                "logging: {format: json}\n"
            ).encode()
        )
        return config

    def tls_connect(self, port: int, ca: Authority, client_id: str) -> tuple[ssl.SSLSocket, int]:
        """Connect over TLS, CONNECT, and return the socket and the served certificate's serial."""
        raw = socket.create_connection((HOST, port), timeout=STOP_TIMEOUT)
        tls = client_context(ca).wrap_socket(raw, server_hostname=HOST)
        self.addCleanup(tls.close)
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        tls.sendall(encode(Connect(client_id, 4, "MQTT", True, 60), 4))
        self.assertEqual(read_packet(tls), CONNACK_OK)
        return tls, x509.load_der_x509_certificate(der).serial_number

    def test_sighup_reloads_certificate(self) -> None:
        """
        After the certificate and key files are replaced and SIGHUP is sent,
        a new connection is served the new certificate, while the one made
        before stays connected and working (PINGREQ gets PINGRESP). A bad
        key at the next SIGHUP is logged and the certificate in force stays.
        """
        folder = FilePath(self.mktemp())
        ca = make_authority(folder)
        cert = ca.issue("broker", server=True)
        port = free_port()
        twistd = TwistdProcess(self, mqttx_argv(self.write_config(port, cert)))
        started = wait_until(
            lambda: twistd.event("service.started") is not None or twistd.process.poll() is not None,
            START_TIMEOUT,
        )
        self.assertTrue(started and twistd.process.poll() is None, twistd.stdout + twistd.stderr)
        before, old_serial = self.tls_connect(port, ca, "before")

        renewed = ca.issue("broker", server=True, file_name="renewed")
        FilePath(cert.cert).setContent(FilePath(renewed.cert).getContent())
        FilePath(cert.key).setContent(FilePath(renewed.key).getContent())
        new_serial = x509.load_pem_x509_certificate(FilePath(renewed.cert).getContent()).serial_number
        twistd.process.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: twistd.event("tls.reloaded") is not None, START_TIMEOUT))
        _, serial = self.tls_connect(port, ca, "after")
        self.assertEqual(serial, new_serial)
        self.assertNotEqual(serial, old_serial)
        before.sendall(b"\xc0\x00")  # PINGREQ
        self.assertEqual(read_packet(before), b"\xd0\x00")  # PINGRESP

        FilePath(cert.key).setContent(b"not a key\n")
        twistd.process.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: twistd.event("tls.reload_failed") is not None, START_TIMEOUT))
        _, serial = self.tls_connect(port, ca, "after-bad-reload")
        self.assertEqual(serial, new_serial)

        twistd.process.send_signal(signal.SIGTERM)
        self.assertEqual(twistd.wait(STOP_TIMEOUT), 0, twistd.stdout + twistd.stderr)
        self.assertNotIn("Traceback", twistd.stdout + twistd.stderr)

    def test_bad_tls_file_at_start(self) -> None:
        """
        A key that does not go with the certificate stops twistd before any
        port opens, with one line naming the listener and the key file.
        """
        folder = FilePath(self.mktemp())
        ca = make_authority(folder)
        cert, other = ca.issue("broker", server=True), ca.issue("other", server=True)
        port = free_port()
        config = self.write_config(port, Issued(cert.cert, other.key))
        twistd = TwistdProcess(self, mqttx_argv(config))
        status = twistd.wait(START_TIMEOUT)
        output = twistd.stdout + twistd.stderr
        self.assertNotEqual(status, 0, output)
        self.assertNotIn("Traceback", output)
        [problem] = output.strip().splitlines()
        self.assertIn(f"listener 'mqtts': tls.key {other.key}: does not go with the certificate", problem)
        with socket.socket() as probe:
            probe.bind((HOST, port))
