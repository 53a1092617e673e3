# -*- test-case-name: tests.transports.test_tls -*-
"""
Tests for L{mqttx.transports.tls}: loading a listener's TLS files, their
errors, reloading, versions and ciphers, and handshakes run in memory
(two L{TLSMemoryBIOProtocol}s over L{twisted.test.iosim} transports, on a
L{Clock}).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IProtocolFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    TLSVersion,
    optionsForClientTLS,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.test.iosim import FakeTransport, IOPump, connect
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mqttx.broker.broker import Broker
from mqttx.broker.stats import ListenerStats
from mqttx.config import MQTTConfig, TLSConfig
from mqttx.interfaces import IAuthenticator
from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import ConnAck, Connect
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.store.memory import MemoryStore
from mqttx.transports.mqtt import MQTTServerFactory, MQTTServerProtocol
from mqttx.transports.tls import ServerTLS, TLSSetupError, peer_common_name
from tests.helpers import BrokerTestCase, FakeClient
from tests.tlscerts import Authority, Issued, make_authority


class Recorder(Protocol):
    """A protocol that keeps what it receives and why its connection ended."""

    def __init__(self) -> None:
        self.received = b""
        self.made = False
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        self.reason = reason


class RefusingFactory(Factory):
    """A factory that refuses every connection, as connection limits do."""

    def buildProtocol(self, addr: Any) -> None:
        return None


class Connection:
    """Both ends of one in-memory TLS connection."""

    def __init__(self, client: TLSMemoryBIOProtocol, server: TLSMemoryBIOProtocol, pump: IOPump) -> None:
        self.client = client
        self.server = server
        self.pump = pump
        # TLSMemoryBIOProtocol forgets its wrapped protocol once closed.
        self.client_app: Recorder = cast(Recorder, client.wrappedProtocol)
        self.server_app: Recorder = cast(Recorder, server.wrappedProtocol)

    def served_serial(self) -> int:
        """The serial number of the certificate the server presented."""
        certificate = self.client.getPeerCertificate()
        assert certificate is not None
        return int(certificate.get_serial_number())


class TLSTestCase(SynchronousTestCase):
    """A CA, a server certificate from it, and helpers to connect in memory."""

    def setUp(self) -> None:
        self.folder = FilePath(self.mktemp())
        self.ca = make_authority(self.folder)
        self.server_cert = self.ca.issue("broker", server=True)
        self.clock = Clock()
        self.stats = ListenerStats()

    def config(self, **changes: Any) -> TLSConfig:
        values: dict[str, Any] = {"cert": self.server_cert.cert, "key": self.server_cert.key}
        values.update(changes)
        return TLSConfig(**values)

    def client_options(
        self, trust: Authority | None = None, cert: Issued | None = None, **extra: Any
    ) -> Any:
        trusted = Certificate.loadPEM(FilePath((trust or self.ca).cert).getContent())
        client_certificate = None
        if cert is not None:
            client_certificate = PrivateCertificate.loadPEM(
                FilePath(cert.cert).getContent() + FilePath(cert.key).getContent()
            )
        return optionsForClientTLS(
            "localhost",
            trustRoot=trusted,
            clientCertificate=client_certificate,
            extraCertificateOptions=extra or None,
        )

    def connect(
        self, tls: ServerTLS, client_options: Any, wrapped: IProtocolFactory | None = None
    ) -> Connection:
        server_factory = tls.wrap(wrapped or Factory.forProtocol(Recorder), self.clock, self.stats)
        address = IPv4Address("TCP", "127.0.0.1", 53122)
        server: TLSMemoryBIOProtocol = cast(Any, server_factory.buildProtocol(address))
        client_factory = TLSMemoryBIOFactory(
            client_options, True, Factory.forProtocol(Recorder), self.clock
        )
        client = client_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8883))
        connection = Connection(client, server, None)  # type: ignore[arg-type]  # set below
        connection.pump = connect(
            server,
            FakeTransport(server, True, peerAddress=address),
            client,
            FakeTransport(client, False),
            greet=False,
            clock=self.clock,
        )
        connection.pump.flush()
        return connection

    def exchange(self, connection: Connection) -> None:
        """Application data goes both ways over C{connection}."""
        connection.client.write(b"ping")
        connection.server.write(b"pong")
        connection.pump.flush()
        self.assertEqual(connection.server_app.received, b"ping")
        self.assertEqual(connection.client_app.received, b"pong")


def failures(events: Sequence[LogEvent]) -> list[LogEvent]:
    return [e for e in events if e.get("event_id") == "tls.handshake_failed"]


class ServerTLSSetupTests(TLSTestCase):
    """
    L{ServerTLS} loads a listener's files; every problem is one line that
    names the listener, the file and the problem.
    """

    def assertSetupError(self, config: TLSConfig, *fragments: str) -> None:
        error = self.assertRaises(TLSSetupError, ServerTLS, config, "mqtts")
        message = str(error)
        self.assertEqual(message.splitlines(), [message])
        self.assertIn("listener 'mqtts'", message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_provides_connection_creator(self) -> None:
        """L{ServerTLS} is what L{TLSMemoryBIOFactory} asks for a connection per client."""
        self.assertTrue(verifyObject(IOpenSSLServerConnectionCreator, ServerTLS(self.config(), "mqtts")))

    def test_unreadable_file(self) -> None:
        """A certificate file that cannot be read is named."""
        missing = self.folder.child("gone.crt").path
        self.assertSetupError(self.config(cert=missing), f"tls.cert {missing}", "cannot read the file")

    def test_no_pem(self) -> None:
        """A certificate file without a PEM certificate is named."""
        other = self.folder.child("text.crt")
        other.setContent(b"hello\n")
        self.assertSetupError(self.config(cert=other.path), other.path, "no PEM certificate")

    def test_bad_pem(self) -> None:
        """A PEM block that is not a certificate is named."""
        bad = self.folder.child("bad.crt")
        bad.setContent(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        self.assertSetupError(self.config(cert=bad.path), bad.path, "certificate 1 is not valid PEM")

    def test_bad_key(self) -> None:
        """A key file without a private key is named."""
        self.assertSetupError(
            self.config(key=self.server_cert.cert), f"tls.key {self.server_cert.cert}", "private key"
        )

    def test_key_of_another_certificate(self) -> None:
        """A key that does not go with the certificate is refused, naming both files."""
        other = self.ca.issue("other", server=True)
        self.assertSetupError(
            self.config(key=other.key), other.key, "does not go with the certificate", self.server_cert.cert
        )

    def test_bad_ciphers(self) -> None:
        """A cipher string that matches no cipher is named."""
        self.assertSetupError(self.config(ciphers="NOT-A-CIPHER"), "tls.ciphers 'NOT-A-CIPHER'")

    def test_empty_ca(self) -> None:
        """An empty CA bundle is named."""
        empty = self.folder.child("empty.crt")
        empty.setContent(b"")
        self.assertSetupError(self.config(ca=empty.path), f"tls.ca {empty.path}", "no PEM certificate")

    def test_chain_sent(self) -> None:
        """
        Certificates after the first in the certificate file are sent as
        the chain: a client that trusts only the root of an intermediate
        authority accepts the server.
        """
        # The test authority signs with path length 0, so the "intermediate"
        # is a second certificate, enough to check it is sent.
        chained = self.folder.child("chain.crt")
        chained.setContent(
            FilePath(self.server_cert.cert).getContent() + FilePath(self.ca.cert).getContent()
        )
        tls = ServerTLS(self.config(cert=chained.path), "mqtts")
        connection = self.connect(tls, self.client_options())
        handle = connection.client.getHandle()
        chain = handle.get_peer_cert_chain()
        self.assertEqual(len(chain), 2)
        self.exchange(connection)


class HandshakeTests(TLSTestCase):
    """Handshakes in memory with the options of a C{tls:} block."""

    def test_trusted_server(self) -> None:
        """A client that trusts the CA completes the handshake; data flows."""
        tls = ServerTLS(self.config(), "mqtts")
        connection = self.connect(tls, self.client_options())
        self.exchange(connection)
        self.assertEqual(self.stats.tls_handshake_failures, 0)

    def test_untrusted_server_logged_once(self) -> None:
        """
        If the client does not trust the server's certificate, the handshake
        fails, and the server logs it once, with the peer address and
        OpenSSL's reason, and counts it. (This also checks the private
        Twisted attributes L{_ServerTLSProtocol} reads.)
        """
        tls = ServerTLS(self.config(), "mqtts")
        other = make_authority(self.folder.child("other"), "other")
        with capturedLogs() as events:
            connection = self.connect(tls, self.client_options(trust=other))
            connection.pump.flush()
        self.assertFalse(connection.server_app.received)
        [event] = failures(events)
        self.assertEqual(event["peer"], "127.0.0.1:53122")
        self.assertEqual(event["listener"], "mqtts")
        self.assertIn("unknown ca", event["reason"])
        self.assertEqual(self.stats.tls_handshake_failures, 1)
        assert connection.server_app.reason is not None
        self.assertTrue(connection.server_app.reason.check(SSL.Error))

    def test_no_log_after_a_good_handshake(self) -> None:
        """A connection that ends after its handshake logs no failure."""
        tls = ServerTLS(self.config(), "mqtts")
        with capturedLogs() as events:
            connection = self.connect(tls, self.client_options())
            connection.client.loseConnection()
            connection.pump.flush()
        self.assertEqual(failures(events), [])
        self.assertIsNotNone(connection.server_app.reason)

    def test_closed_before_handshake_not_counted(self) -> None:
        """A peer that closes before the handshake is not a handshake failure."""
        tls = ServerTLS(self.config(), "mqtts")
        server_factory = tls.wrap(Factory.forProtocol(Recorder), self.clock, self.stats)
        server = server_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        assert server is not None
        transport = FakeTransport(server, True)
        with capturedLogs() as events:
            server.makeConnection(transport)
            server.connectionLost(Failure(ConnectionError()))
        self.assertEqual(failures(events), [])
        self.assertEqual(self.stats.tls_handshake_failures, 0)

    def test_client_certificate_required(self) -> None:
        """
        On a C{require_client_cert} listener, a client without a certificate
        fails the handshake; one with a certificate from the CA passes, and
        its common name can be read from the server's transport.
        """
        tls = ServerTLS(self.config(ca=self.ca.cert, require_client_cert=True), "mqtts")
        with capturedLogs() as events:
            self.connect(tls, self.client_options())
        [event] = failures(events)
        self.assertIn("certificate", event["reason"])
        alice = self.ca.issue("alice")
        connection = self.connect(tls, self.client_options(cert=alice))
        self.exchange(connection)
        self.assertEqual(peer_common_name(connection.server), "alice")

    def test_client_certificate_optional(self) -> None:
        """
        With a CA but no C{require_client_cert}, a client without a
        certificate passes, and one with a certificate from another CA fails.
        """
        tls = ServerTLS(self.config(ca=self.ca.cert), "mqtts")
        connection = self.connect(tls, self.client_options())
        self.exchange(connection)
        self.assertIsNone(peer_common_name(connection.server))
        other = make_authority(self.folder.child("other"), "other")
        with capturedLogs() as events:
            self.connect(tls, self.client_options(cert=other.issue("mallory")))
        [event] = failures(events)
        self.assertIn("certificate verify failed", event["reason"])

    def test_minimum_version_1_3(self) -> None:
        """With C{min_version: "1.3"}, a client that speaks at most TLS 1.2 is refused."""
        tls = ServerTLS(self.config(min_version="1.3"), "mqtts")
        with capturedLogs() as events:
            connection = self.connect(
                tls, self.client_options(lowerMaximumSecurityTo=TLSVersion.TLSv1_2)
            )
        self.assertEqual(len(failures(events)), 1)
        self.assertFalse(connection.server_app.received)
        # And with 1.2 allowed it passes.
        self.exchange(
            self.connect(
                ServerTLS(self.config(), "mqtts"),
                self.client_options(lowerMaximumSecurityTo=TLSVersion.TLSv1_2),
            )
        )

    def test_minimum_version_1_2(self) -> None:
        """With the default C{min_version: "1.2"}, TLS 1.1 is refused."""
        tls = ServerTLS(self.config(), "mqtts")
        # set_options adds nothing with 0 and returns the options in force.
        options = tls._options.getContext().set_options(0)
        self.assertTrue(options & SSL.OP_NO_TLSv1_1)
        self.assertFalse(options & SSL.OP_NO_TLSv1_2)
        options = ServerTLS(self.config(min_version="1.3"), "mqtts")._options.getContext().set_options(0)
        self.assertTrue(options & SSL.OP_NO_TLSv1_2)

    def test_ciphers(self) -> None:
        """
        C{ciphers} limits the TLS 1.2 ciphers offered: a TLS 1.2 client
        gets the one allowed.
        """
        cipher = "ECDHE-ECDSA-CHACHA20-POLY1305"
        tls = ServerTLS(self.config(ciphers=cipher), "mqtts")
        connection = self.connect(
            tls, self.client_options(lowerMaximumSecurityTo=TLSVersion.TLSv1_2)
        )
        self.exchange(connection)
        self.assertEqual(connection.client.getHandle().get_cipher_name(), cipher)
        tls12 = [
            c
            for c in SSL.Connection(tls._options.getContext()).get_cipher_list()
            if not c.startswith("TLS_")
        ]
        self.assertEqual(tls12, [cipher])

    def test_refused_by_wrapped_factory(self) -> None:
        """If the wrapped factory refuses a connection, so does the TLS one (at once)."""
        tls = ServerTLS(self.config(), "mqtts")
        factory = tls.wrap(RefusingFactory(), self.clock)
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)))


class ReloadTests(TLSTestCase):
    """L{ServerTLS.reload} swaps the certificate for new connections only."""

    def test_new_connections_get_the_new_certificate(self) -> None:
        """
        After the files are replaced and reloaded, a new connection is served
        the new certificate, while a connection made before goes on working.
        """
        tls = ServerTLS(self.config(), "mqtts")
        before = self.connect(tls, self.client_options())
        old_serial = before.served_serial()
        renewed = self.ca.issue("broker", server=True, file_name="renewed")
        FilePath(self.server_cert.cert).setContent(FilePath(renewed.cert).getContent())
        FilePath(self.server_cert.key).setContent(FilePath(renewed.key).getContent())
        tls.reload()
        after = self.connect(tls, self.client_options())
        self.assertNotEqual(after.served_serial(), old_serial)
        self.exchange(after)
        self.exchange(before)
        self.assertEqual(before.served_serial(), old_serial)

    def test_failed_reload_keeps_the_old(self) -> None:
        """If the new files are bad, reload raises and the old certificate stays."""
        tls = ServerTLS(self.config(), "mqtts")
        old_serial = self.connect(tls, self.client_options()).served_serial()
        FilePath(self.server_cert.key).setContent(b"garbage")
        error = self.assertRaises(TLSSetupError, tls.reload)
        self.assertIn(self.server_cert.key, str(error))
        again = self.connect(tls, self.client_options())
        self.assertEqual(again.served_serial(), old_serial)
        self.exchange(again)


def certificate_without_common_name() -> Any:
    """A self-signed certificate whose subject names only an organization."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mqttx tests")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return crypto.X509.from_cryptography(certificate)


def connack(client: FakeClient) -> ConnAck:
    assert client.connack is not None
    return client.connack


class CertificateTransport(StringTransport):
    """A L{StringTransport} whose peer presented C{certificate}."""

    certificate: Any = None

    def getPeerCertificate(self) -> Any:
        return self.certificate


@implementer(IAuthenticator)
class RefuseAll:
    """An authenticator that refuses every CONNECT (0x86)."""

    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, listener: str
    ) -> Deferred[int]:
        return succeed(ReasonCode.BAD_USER_NAME_OR_PASSWORD)


class VerifiedIdentityTests(BrokerTestCase):
    """
    On a listener with C{use_identity_as_username}, the client's
    certificate names and authenticates it: its subject common name is the
    user name, whatever the CONNECT says, and no password is checked.
    """

    def make_broker(self) -> Broker:
        return Broker(self.config, clock=self.clock, store=self.store, authenticator=RefuseAll())

    def setUp(self) -> None:
        super().setUp()
        folder = FilePath(self.mktemp())
        self.ca = make_authority(folder)
        self.certificate: Any = crypto.X509.from_cryptography(
            x509.load_pem_x509_certificate(FilePath(self.ca.issue("alice").cert).getContent())
        )
        self.factory.certificate_username = True

    def open_connection(self, level: int = 4) -> FakeClient:
        self._ports += 1
        addr = IPv4Address("TCP", "127.0.0.1", self._ports)
        proto = self.factory.buildProtocol(addr)
        assert proto is not None
        transport = CertificateTransport(peerAddress=addr)
        transport.certificate = self.certificate
        proto.makeConnection(transport)
        return FakeClient(proto, transport, level)

    def connected_events(self, level: int, username: str | None) -> tuple[FakeClient, list[LogEvent]]:
        with capturedLogs() as events:
            client = self.connect_client("c", level, username=username, password=b"wrong")
        return client, list(events)

    def test_common_name_is_the_user_name(self) -> None:
        """
        The certificate's common name replaces the CONNECT's user name, and
        the client is let in though the authenticator refuses every
        password, for 3.1.1 and 5.0.
        """
        for level in (4, 5):
            client, events = self.connected_events(level, "mallory")
            self.assertEqual(connack(client).reason_code, 0)
            [connected] = [e for e in events if e.get("event_id") == "client.connected"]
            self.assertEqual(connected["username"], "alice")
            self.assertEqual(client.protocol.username, "alice")

    def test_without_common_name_refused(self) -> None:
        """
        A certificate without a common name is refused with CONNACK 0x87
        (not authorized; 3.1.1: 0x05), and logged.
        """
        self.certificate = certificate_without_common_name()
        for level, code in ((5, ReasonCode.NOT_AUTHORIZED), (4, 0x05)):
            client, events = self.connected_events(level, "alice")
            self.assertEqual(connack(client).reason_code, code)
            self.assertTrue(client.disconnecting)
            self.assertIn("connect.no_certificate_name", [e.get("event_id") for e in events])

    def test_other_listeners_check_the_password(self) -> None:
        """Where the listener does not take the certificate's name, CONNECT's credentials count."""
        self.factory.certificate_username = False
        client, events = self.connected_events(5, "alice")
        self.assertEqual(connack(client).reason_code, ReasonCode.BAD_USER_NAME_OR_PASSWORD)
        self.assertIsNone(client.protocol.identity)


class MQTTOverTLSTests(TLSTestCase):
    """The MQTT protocol under TLS: timers, Nagle, direct sends."""

    def setUp(self) -> None:
        super().setUp()
        self.broker = Broker(MQTTConfig(), clock=self.clock, store=MemoryStore())
        self.successResultOf(self.broker.start())
        self.mqtt = MQTTServerFactory(self.broker, self.clock, "mqtts")
        self.tls = ServerTLS(self.config(), "mqtts")

    def server(self) -> tuple[TLSMemoryBIOProtocol, MQTTServerProtocol, NoDelayTransport]:
        factory = self.tls.wrap(self.mqtt, self.clock)
        server: TLSMemoryBIOProtocol = cast(Any, factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000)))
        mqtt = cast(MQTTServerProtocol, server.wrappedProtocol)
        transport = NoDelayTransport(server, True)
        server.makeConnection(transport)
        return server, mqtt, transport

    def test_silent_peer_closed_by_connect_timeout(self) -> None:
        """
        A peer that opens TCP and never sends a ClientHello is aborted when
        the CONNECT timeout, which starts at the TCP connection, runs out.
        """
        server, mqtt, transport = self.server()
        self.clock.advance(self.broker.config.connect_timeout - 0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.aborted)

    def test_no_delay_reaches_tcp(self) -> None:
        """C{setTcpNoDelay} reaches the TCP transport under TLS."""
        server, mqtt, transport = self.server()
        self.assertEqual(transport.no_delay, [True])

    def test_no_direct_send(self) -> None:
        """
        Under TLS the protocol never writes around its transport to the TCP
        socket (which TLS's attribute forwarding would otherwise expose).
        """
        server, mqtt, transport = self.server()
        self.assertTrue(hasattr(server, "socket"))
        self.assertFalse(mqtt._direct)

    def test_mqtt_over_tls(self) -> None:
        """A CONNECT through TLS in memory gets its CONNACK through TLS."""
        connection = self.connect(self.tls, self.client_options(), self.mqtt)
        connection.client.write(encode(Connect("c", 4, "MQTT", True, 60), 4))
        connection.pump.flush()
        self.assertEqual(connection.client_app.received, b"\x20\x02\x00\x00")


class NoDelayTransport(FakeTransport):
    """A fake TCP transport that records C{setTcpNoDelay} and looks like one with a socket."""

    def __init__(self, protocol: Any, is_server: bool) -> None:
        super().__init__(protocol, is_server)
        self.no_delay: list[bool] = []
        self.socket = object()
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay.append(enabled)
