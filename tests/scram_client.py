# -*- test-case-name: tests.auth.test_scram -*-
"""
The client's side of SCRAM-SHA-256 (RFC 5802 / RFC 7677), for the tests of
L{mqttx.auth.scram}: builds the client-first and client-final messages and
checks the server's signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from mqttx.auth.scram import client_proof, server_signature


class ScramClient:
    """
    One SCRAM-SHA-256 exchange of a client.

    @param user: the user name (sent escaped in C{n=}).
    @param password: the password, as UTF-8.
    @param nonce: the client nonce.
    @param header: the GS2 header.
    @ivar auth_message: the AuthMessage, once L{client_final} has run.
    """

    def __init__(
        self, user: str, password: str, nonce: str = "fyko+d2lbbFgONRv9qkxdawL", header: str = "n,,"
    ) -> None:
        self.user = user
        self.header = header
        self.password = password.encode("utf-8")
        self.nonce = nonce
        self.auth_message = b""
        self._salted = b""

    @property
    def client_first_bare(self) -> str:
        name = self.user.replace("=", "=3D").replace(",", "=2C")
        return f"n={name},r={self.nonce}"

    def client_first(self) -> bytes:
        """The client-first message, with the GS2 header."""
        return f"{self.header}{self.client_first_bare}".encode()

    def client_final(self, server_first: bytes, password: str | None = None) -> bytes:
        """
        The client-final message answering C{server_first} (with another
        C{password} to get it wrong).
        """
        fields = dict(field.split("=", 1) for field in server_first.decode().split(","))
        secret = self.password if password is None else password.encode("utf-8")
        self._salted = hashlib.pbkdf2_hmac(
            "sha256", secret, base64.b64decode(fields["s"]), int(fields["i"])
        )
        binding = base64.b64encode(self.header.encode()).decode()
        without_proof = f"c={binding},r={fields['r']}"
        self.auth_message = ",".join(
            (self.client_first_bare, server_first.decode(), without_proof)
        ).encode()
        proof = client_proof(self._salted, self.auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def server_final_ok(self, server_final: bytes | None) -> bool:
        """Whether C{server_final} carries the right server signature."""
        server_key = hmac.digest(self._salted, b"Server Key", "sha256")
        expected = server_signature(server_key, self.auth_message)
        return server_final == b"v=" + base64.b64encode(expected)
