# -*- test-case-name: tests.transports.test_tls -*-
"""
TLS under any stream listener: the server side of a listener's C{tls:}
block.

L{ServerTLS} loads the listener's certificate chain, key and client CA
bundle into Twisted's L{CertificateOptions} (the C{ssl:} endpoint string
cannot verify client certificates) and wraps the listener's factory, so
MQTT, WebSocket and metrics connections all get the same TLS. It decides
nothing about MQTT: the MQTT protocol reads the client certificate's common
name with L{peer_common_name} when its listener takes it as the user name.
"""

from __future__ import annotations

import re
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import (
    IAddress,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorTime,
)
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from mqttx.broker.stats import ListenerStats
from mqttx.config import TLSConfig
from mqttx.transports.address import describe_address

__all__ = ["ServerTLS", "TLSSetupError", "peer_common_name"]

_VERSIONS = {"1.2": TLSVersion.TLSv1_2, "1.3": TLSVersion.TLSv1_3}
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


class TLSSetupError(Exception):
    """
    A listener's TLS files or settings cannot be used. C{str(error)} is one
    line naming the listener, the file (or setting) and the problem.
    """


def _fail(listener: str, key: str, path: str, problem: str) -> TLSSetupError:
    return TLSSetupError(f"listener {listener!r}: tls.{key} {path}: {' '.join(problem.split())}")


def _read(listener: str, key: str, path: str) -> bytes:
    try:
        return FilePath(path).getContent()
    except OSError as e:
        raise _fail(listener, key, path, f"cannot read the file: {e.strerror or e}") from e


def _certificates(listener: str, key: str, path: str) -> list[crypto.X509]:
    """Every PEM certificate in the file at C{path}, in order."""
    blocks = _PEM_CERTIFICATE.findall(_read(listener, key, path))
    if not blocks:
        raise _fail(listener, key, path, "no PEM certificate in the file")
    certificates = []
    for number, block in enumerate(blocks, 1):
        try:
            certificates.append(crypto.X509.from_cryptography(x509.load_pem_x509_certificate(block)))
        except ValueError as e:
            raise _fail(listener, key, path, f"certificate {number} is not valid PEM: {e}") from e
    return certificates


def _private_key(listener: str, path: str) -> crypto.PKey:
    # cryptography, not crypto.load_privatekey: OpenSSL would ask for the
    # passphrase of an encrypted key on the terminal.
    try:
        key = serialization.load_pem_private_key(_read(listener, "key", path), password=None)
        return crypto.PKey.from_cryptography_key(key)  # type: ignore[arg-type]
    except TypeError as e:
        raise _fail(listener, "key", path, "the key is encrypted; give it unencrypted") from e
    except (ValueError, crypto.Error) as e:
        raise _fail(listener, "key", path, f"not a usable PEM private key: {e}") from e


def _ssl_reason(error: SSL.Error) -> str:
    """OpenSSL's reasons in C{error}, such as C{"certificate verify failed"}."""
    reasons = error.args[0] if error.args else None
    if isinstance(reasons, list) and reasons:
        return "; ".join(str(r[-1]) for r in reasons if isinstance(r, tuple) and r) or str(error)
    return str(error) or type(error).__name__


def load_options(config: TLSConfig, listener: str) -> CertificateOptions:
    """
    Load a C{tls:} block into L{CertificateOptions}, with its context made,
    so every problem shows now rather than at the first client.

    @param config: the listener's C{tls:} block.
    @param listener: the listener's name, for error messages.
    @raise TLSSetupError: with one line naming the listener, the file and
        the problem: an unreadable file, a file without valid PEM, a key
        that does not go with the certificate, a cipher string that matches
        nothing.
    """
    chain = _certificates(listener, "cert", config.cert)
    key = _private_key(listener, config.key)
    check = SSL.Context(SSL.TLS_METHOD)
    try:
        # OpenSSL refuses keys its security level finds too weak here.
        check.use_certificate(chain[0])
    except SSL.Error as e:
        raise _fail(listener, "cert", config.cert, f"cannot be used: {_ssl_reason(e)}") from e
    try:
        # Either compares the key with the certificate.
        check.use_privatekey(key)
        check.check_privatekey()
    except SSL.Error as e:
        raise _fail(
            listener, "key", config.key, f"does not go with the certificate in {config.cert} ({_ssl_reason(e)})"
        ) from e
    authorities = _certificates(listener, "ca", config.ca) if config.ca is not None else None
    ciphers = None
    if config.ciphers is not None:
        try:
            ciphers = AcceptableCiphers.fromOpenSSLCipherString(config.ciphers)
        except SSL.Error as e:
            raise _fail(listener, "ciphers", repr(config.ciphers), _ssl_reason(e)) from e
    try:
        options = CertificateOptions(
            privateKey=key,
            certificate=chain[0],
            extraCertChain=chain[1:],
            raiseMinimumTo=_VERSIONS[config.min_version],
            acceptableCiphers=ciphers,
            # With a CA, a client may present a certificate signed by it: one
            # that does not verify fails the handshake, none at all passes
            # unless require_client_cert.
            verify=authorities is not None,
            caCerts=authorities,
            requireCertificate=config.require_client_cert,
        )
    except ValueError as e:
        # CertificateOptions' only ValueError here: no acceptable cipher.
        raise _fail(listener, "ciphers", repr(config.ciphers), f"no usable cipher matches it ({e})") from e
    try:
        options.getContext()
    except SSL.Error as e:
        raise _fail(listener, "cert", config.cert, f"cannot be used: {_ssl_reason(e)}") from e
    return options


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    The TLS of one listener: its certificate, key, client CAs, versions and
    ciphers, which L{reload} can replace while it serves.

    L{TLSMemoryBIOFactory} asks its connection creator (this object) for an
    C{SSL.Connection} for each new connection, while L{CertificateOptions}
    builds its C{SSL.Context} once and keeps it: L{reload} replaces the
    options, so new connections get the new files and those open keep
    theirs.

    @ivar config: the listener's C{tls:} block.
    @ivar listener: the listener's name.
    """

    def __init__(self, config: TLSConfig, listener: str) -> None:
        """
        @raise TLSSetupError: if the files or settings cannot be used (see
            L{load_options}).
        """
        self.config = config
        self.listener = listener
        self._options = load_options(config, listener)

    def reload(self) -> None:
        """
        Read the files again. New connections use them from now on; open
        connections go on with the ones they started with.

        @raise TLSSetupError: if they cannot be used; the ones loaded before
            stay in force.
        """
        self._options = load_options(self.config, self.listener)

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """The TLS connection of a new client, with the files loaded last."""
        return self._options.serverConnectionForTLS(tlsProtocol)

    def wrap(
        self, factory: IProtocolFactory, clock: IReactorTime, stats: ListenerStats | None = None
    ) -> IProtocolFactory:
        """
        Put TLS under the connections C{factory} builds.

        @param clock: schedules the flush of small writes, which Twisted's
            TLS transport gathers for one reactor turn.
        @param stats: counts failed handshakes in its
            C{tls_handshake_failures}, if given.
        """
        return _ServerTLSFactory(self, factory, clock, stats)


class _ServerTLSFactory(TLSMemoryBIOFactory):
    """
    L{TLSMemoryBIOFactory} for a listener: a connection the wrapped factory
    refuses (by returning C{None}, as connection limits do) is closed at
    once, and handshake failures are logged and counted.
    """

    log = Logger()

    def __init__(
        self, tls: ServerTLS, factory: IProtocolFactory, clock: IReactorTime, stats: ListenerStats | None
    ) -> None:
        super().__init__(tls, False, factory, clock)
        self.listener = tls.listener
        self.stats = stats

    def buildProtocol(self, addr: IAddress | None) -> _ServerTLSProtocol | None:  # type: ignore[override]
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            # WrappingFactory would wrap None and fail in makeConnection.
            return None
        return _ServerTLSProtocol(self, wrapped)

    def handshake_failed(self, protocol: TLSMemoryBIOProtocol, reason: Failure) -> None:
        """Log why the handshake of C{protocol} did not complete, once per connection."""
        peer = describe_address(protocol.getPeer())
        if not reason.check(SSL.Error):
            # The peer (or the CONNECT timeout) closed before the handshake
            # was over: a port scan or a health check as often as a client.
            self.log.debug(
                "connection from {peer} on {listener} closed before the TLS handshake completed",
                peer=peer,
                listener=self.listener,
                event_id="tls.handshake_incomplete",
            )
            return
        if self.stats is not None:
            self.stats.tls_handshake_failures += 1
        self.log.info(
            "TLS handshake with {peer} on {listener} failed: {reason}",
            peer=peer,
            listener=self.listener,
            reason=_ssl_reason(cast(SSL.Error, reason.value)),
            event_id="tls.handshake_failed",
        )


class _ServerTLSProtocol(BufferingTLSTransport):
    """
    Twisted's TLS transport, which tells its factory of a handshake that did
    not complete.
    """

    factory: _ServerTLSFactory
    _handshake_reported = False

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Twisted's private _handshakeDone (set once the handshake is over)
        # and _reason (the OpenSSL error that ended it, which the wrapped
        # protocol gets as its reason): TLSHandshakeLogTests fails if they
        # change.
        if not self._handshakeDone and not self._handshake_reported:
            self._handshake_reported = True
            self.factory.handshake_failed(self, self._reason or reason)
        super().connectionLost(reason)


def peer_common_name(transport: object) -> str | None:
    """
    The subject common name of the certificate the peer of C{transport}
    presented, or C{None} if it presented none (or the certificate has no
    common name, or the transport is not TLS). With several, the first.

    @param transport: a TLS transport, or one that passes
        C{getPeerCertificate} on from the TLS transport under it.
    """
    get_certificate = getattr(transport, "getPeerCertificate", None)
    if get_certificate is None:
        return None
    certificate = get_certificate()
    if certificate is None:
        return None
    names = certificate.to_cryptography().subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
