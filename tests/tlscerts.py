"""
Certificates for the TLS tests, made with C{cryptography}: a certificate
authority, a server certificate for 127.0.0.1 and C{localhost}, and client
certificates whose subject common name is a user name.

Keys are P-256 (fast to make); everything is written as PEM files into a
folder the test owns.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.python.filepath import FilePath

__all__ = ["Authority", "Issued", "make_authority"]

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files."""

    cert: str
    key: str


@dataclass(frozen=True)
class Authority:
    """
    A certificate authority whose certificate is in the PEM file C{cert};
    L{issue} signs new certificates with it.
    """

    name: str
    cert: str
    folder: FilePath[str]
    _certificate: x509.Certificate
    _key: ec.EllipticCurvePrivateKey

    def issue(
        self,
        common_name: str,
        *,
        server: bool = False,
        valid_days: int = 30,
        file_name: str | None = None,
    ) -> Issued:
        """
        Sign a certificate for C{common_name}: a server certificate for
        127.0.0.1 and C{localhost} if C{server}, else a client certificate.
        A negative C{valid_days} gives one that has expired.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        not_after = now + valid_days * _DAY
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now, not_after) - _DAY)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        certificate = builder.sign(self._key, hashes.SHA256())
        stem = file_name or f"{self.name}-{common_name}"
        return Issued(
            cert=_write(self.folder.child(f"{stem}.crt"), _cert_pem(certificate)),
            key=_write(self.folder.child(f"{stem}.key"), _key_pem(key)),
        )


def make_authority(folder: FilePath[str], name: str = "ca") -> Authority:
    """Make a self-signed certificate authority, written to C{folder}/C{name}.crt."""
    if not folder.exists():
        folder.makedirs()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mqttx test {name}")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 365 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = _write(folder.child(f"{name}.crt"), _cert_pem(certificate))
    return Authority(name, path, folder, certificate, key)


def _cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: FilePath[str], content: bytes) -> str:
    path.setContent(content)
    return path.path
