# -*- test-case-name: tests.benchmarks.test_transports -*-
"""
The client side of RFC 6455 WebSocket, as much as the transports benchmark
needs to carry MQTT: the opening handshake (HTTP/1.1 upgrade offering the
C{mqtt} subprotocol) and the framing (masked frames from the client,
unmasked from the server, control frames answered by the caller).

Sans-IO and standard library only: bytes in, frames out. This is benchmark
code, not mqttx's WebSocket (Autobahn serves that); it has no extensions
(no permessage-deflate) and no UTF-8 checks, as MQTT uses binary frames.
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameDecoder",
    "WebSocketError",
    "accept_value",
    "check_handshake",
    "encode_frame",
    "handshake_request",
    "mask_payload",
    "new_key",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
#: RFC 6455 section 1.3.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
#: The largest frame accepted (a sanity bound: MQTT packets here are small).
MAX_FRAME = 64 * 1024 * 1024


class WebSocketError(Exception):
    """
    The server broke the handshake or the framing.
    """


def new_key(rng: random.Random | None = None) -> str:
    """
    A C{Sec-WebSocket-Key}: 16 random bytes, base64.
    """
    rng = rng or random.Random()
    return base64.b64encode(rng.getrandbits(128).to_bytes(16, "big")).decode("ascii")


def accept_value(key: str) -> str:
    """
    The C{Sec-WebSocket-Accept} a server must answer C{key} with.
    """
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()  # noqa: S324 - RFC 6455
    return base64.b64encode(digest).decode("ascii")


def handshake_request(
    host: str, port: int, path: str, key: str, subprotocol: str = "mqtt"
) -> bytes:
    """
    The opening handshake's request: C{GET path} with the upgrade headers
    and C{Sec-WebSocket-Protocol: subprotocol} [MQTT-6.0.0-3].
    """
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Protocol: {subprotocol}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def check_handshake(head: bytes, key: str, subprotocol: str = "mqtt") -> None:
    """
    Check the server's answer to L{handshake_request}: status 101, the
    upgrade headers, the accept value of C{key} and the subprotocol.

    @param head: the response up to and without the blank line ending it.
    @raise WebSocketError: naming what is wrong.
    """
    text = head.decode("latin-1")
    status, *lines = text.split("\r\n")
    parts = status.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or parts[1] != "101":
        raise WebSocketError(f"handshake refused: {status[:200]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise WebSocketError(f"no 'Upgrade: websocket' in the answer: {headers.get('upgrade')!r}")
    if "upgrade" not in headers.get("connection", "").lower():
        raise WebSocketError(
            f"no 'Connection: Upgrade' in the answer: {headers.get('connection')!r}"
        )
    if headers.get("sec-websocket-accept") != accept_value(key):
        raise WebSocketError(f"wrong Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r}")
    if headers.get("sec-websocket-protocol") != subprotocol:
        raise WebSocketError(
            f"subprotocol {headers.get('sec-websocket-protocol')!r} selected, not {subprotocol!r}"
        )


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """
    XOR C{payload} with the 4-byte C{mask} repeated (RFC 6455 section
    5.3); the same function unmasks.
    """
    n = len(payload)
    if not n:
        return b""
    repeated = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little"
    )


def _header(opcode: int, length: int, masked: bool, fin: bool) -> bytes:
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if masked else 0
    if length < 126:
        return bytes((first, bit | length))
    if length < 65536:
        return bytes((first, bit | 126)) + _U16.pack(length)
    return bytes((first, bit | 127)) + _U64.pack(length)


def encode_frame(
    payload: bytes, opcode: int = OP_BINARY, mask: bytes | None = None, fin: bool = True
) -> bytes:
    """
    One frame. A client's frames are masked (RFC 6455 section 5.1): give
    the 4 mask bytes; C{mask=None} makes an unmasked (server) frame.
    """
    if mask is None:
        return _header(opcode, len(payload), False, fin) + payload
    if len(mask) != 4:
        raise ValueError("a mask is 4 bytes")
    return _header(opcode, len(payload), True, fin) + mask + mask_payload(payload, mask)


class FrameDecoder:
    """
    Frames out of a byte stream, in order, across any chunking.

    L{feed} returns each complete frame as C{(opcode, payload)}, unmasked
    if it was masked; continuation frames keep opcode 0 (for MQTT the
    payloads are one byte stream, so message boundaries do not matter).
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = b""
        self._max = max_frame

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """
        Add bytes; take the frames they complete.

        @raise WebSocketError: reserved bits set (no extension was agreed),
            a fragmented or oversized control frame, a frame over the limit.
        """
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        out: list[tuple[int, bytes]] = []
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            p = pos + 2
            if length == 126:
                if n - p < 2:
                    break
                length = _U16.unpack_from(buf, p)[0]
                p += 2
            elif length == 127:
                if n - p < 8:
                    break
                length = _U64.unpack_from(buf, p)[0]
                p += 8
            if b0 & 0x70:
                raise WebSocketError(f"reserved bits set in frame header {b0:#04x}")
            opcode = b0 & 0x0F
            if opcode >= 0x8 and (length > 125 or not b0 & 0x80):
                raise WebSocketError(f"bad control frame: opcode {opcode}, length {length}")
            if length > self._max:
                raise WebSocketError(f"frame of {length} bytes, over {self._max}")
            mask = None
            if b1 & 0x80:
                if n - p < 4:
                    break
                mask = buf[p : p + 4]
                p += 4
            end = p + length
            if end > n:
                break
            payload = buf[p:end]
            if mask is not None:
                payload = mask_payload(payload, mask)
            out.append((opcode, payload))
            pos = end
        self._buf = buf[pos:] if pos < n else b""
        return out
