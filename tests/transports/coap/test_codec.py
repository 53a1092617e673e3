"""
Tests for L{mqttx.transports.coap.codec}: exact bytes of RFC 7252 layouts,
every format error with the action the RFC asks for, option checks, block
option values, round-trip and fuzz properties, and a cross-check with
aiocoap's own encoder and decoder.
"""

from __future__ import annotations

import aiocoap  # type: ignore[import-untyped]
from aiocoap import numbers as aionumbers
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mqttx.transports.coap.codec import (
    Action,
    BlockValue,
    CoAPFormatError,
    CoAPOptionError,
    Code,
    Message,
    MessageType,
    Option,
    OptionNumber,
    code_text,
    decode,
    encode,
    path_options,
    query_options,
    uint_bytes,
)

CON, NON, ACK, RST = MessageType.CON, MessageType.NON, MessageType.ACK, MessageType.RST
N = OptionNumber


class LayoutTests(SynchronousTestCase):
    """Exact bytes for the header, options and payload marker (section 3)."""

    def test_get_temperature(self) -> None:
        """
        RFC 7252 figure 16's "GET /temperature", MID 0x7d34, no token: header
        0x40 (version 1, CON, TKL 0), code 0.01, then one option with delta
        11 and length 11 (0xBB).
        """
        m = Message(CON, Code.GET, 0x7D34, options=(Option.string(N.URI_PATH, "temperature"),))
        wire = bytes.fromhex("40017d34") + b"\xbbtemperature"
        self.assertEqual(encode(m), wire)
        self.assertEqual(decode(wire), m)

    def test_piggybacked_response(self) -> None:
        """An ACK 2.05 with a token and a payload: TKL 2, then 0xFF, payload."""
        m = Message(ACK, Code.CONTENT, 0x7D34, b"\x71\x72", payload=b"22.3 C")
        wire = bytes.fromhex("62457d347172") + b"\xff22.3 C"
        self.assertEqual(encode(m), wire)
        self.assertEqual(decode(wire), m)
        self.assertTrue(m.is_response)
        self.assertFalse(m.is_request)

    def test_delta_extended_13(self) -> None:
        """Delta 13..268: nibble 13 and one byte delta-13 (Size1 = 60 -> 0xD0 0x2F)."""
        m = Message(NON, Code.POST, 1, options=(Option.uint(N.SIZE1, 0),))
        self.assertEqual(encode(m), bytes.fromhex("50020001d02f"))
        self.assertEqual(decode(encode(m)), m)

    def test_delta_extended_14(self) -> None:
        """Delta 269..65804: nibble 14 and two bytes delta-269 (option 300 -> 0xE0 0x00 0x1F)."""
        m = Message(NON, Code.POST, 1, options=(Option(300, b"x"),))
        self.assertEqual(encode(m), bytes.fromhex("50020001e1001f78"))
        self.assertEqual(decode(encode(m)), m)

    def test_length_extended(self) -> None:
        """Lengths 13 and 269 take the one- and two-byte extended forms."""
        v13, v269 = b"a" * 13, b"b" * 269
        m = Message(CON, Code.PUT, 2, options=(Option(N.URI_PATH, v13), Option(N.URI_PATH, v269)))
        wire = encode(m)
        self.assertEqual(wire[4:6], bytes((0xBD, 0)))
        self.assertEqual(wire[6 + 13 : 6 + 13 + 3], bytes((0x0E, 0, 0)))
        self.assertEqual(decode(wire), m)

    def test_repeated_options_keep_order(self) -> None:
        """Repeated options have delta 0 and keep their order; others are sorted."""
        m = Message(
            CON,
            Code.GET,
            3,
            options=(
                Option.string(N.URI_PATH, "ps"),
                Option.uint(N.OBSERVE, 0),
                Option.string(N.URI_PATH, "a"),
            ),
        )
        self.assertEqual([o.number for o in m.options], [6, 11, 11])
        self.assertEqual(encode(m), bytes.fromhex("400100036052") + b"ps" + b"\x01a")
        self.assertEqual(decode(encode(m)).uri_path, ["ps", "a"])

    def test_empty_messages(self) -> None:
        """Empty ACK, RST and CON ping are the 4-byte header alone."""
        for t in (CON, ACK, RST):
            m = Message(t, Code.EMPTY, 0xABCD)
            self.assertEqual(encode(m), bytes(((1 << 6) | (t << 4), 0, 0xAB, 0xCD)))
            self.assertEqual(decode(encode(m)), m)
            self.assertTrue(m.is_empty)


class FormatErrorTests(SynchronousTestCase):
    """Each malformed datagram raises with the action RFC 7252 asks for."""

    def check(self, wire: bytes, action: Action, mid: int | None) -> CoAPFormatError:
        e: CoAPFormatError = self.assertRaises(CoAPFormatError, decode, wire)
        self.assertIs(e.action, action)
        self.assertEqual(e.message_id, mid)
        return e

    def test_too_short(self) -> None:
        """Under 4 bytes there is no message ID to reset: ignore."""
        for wire in (b"", b"\x40", b"\x40\x01\x00"):
            e = self.check(wire, Action.IGNORE, None)
            self.assertIsNone(e.reset())

    def test_unknown_version(self) -> None:
        """Section 3: unknown versions are silently ignored, even CON."""
        self.check(bytes.fromhex("80010001"), Action.IGNORE, 1)
        self.check(bytes.fromhex("00010001"), Action.IGNORE, 1)

    def test_con_is_reset(self) -> None:
        """A malformed CON is rejected with a matching RST (section 4.2)."""
        e = self.check(bytes.fromhex("49010102"), Action.RESET, 0x0102)
        self.assertEqual(e.reset(), Message(RST, Code.EMPTY, 0x0102))
        self.assertIn("token length 9", str(e))

    def test_non_ack_rst_ignored(self) -> None:
        """Malformed NON, ACK and RST are silently ignored (section 4.3)."""
        for first in (0x59, 0x69, 0x79):
            e = self.check(bytes((first, 1, 0, 5)), Action.IGNORE, 5)
            self.assertIsNone(e.reset())

    def test_reserved_token_lengths(self) -> None:
        """TKL 9-15 are a format error."""
        for tkl in range(9, 16):
            self.check(bytes((0x40 | tkl, 1, 0, 1)) + b"x" * 16, Action.RESET, 1)

    def test_truncated_token(self) -> None:
        self.check(bytes.fromhex("44010001aabb"), Action.RESET, 1)

    def test_empty_with_bytes(self) -> None:
        """Section 4.1: an empty message with a token or more bytes."""
        self.check(bytes.fromhex("41000001aa"), Action.RESET, 1)
        self.check(bytes.fromhex("40000001ff"), Action.RESET, 1)
        self.check(bytes.fromhex("60000001ff"), Action.IGNORE, 1)

    def test_reserved_nibbles(self) -> None:
        """Delta 15 without the full marker, or length 15, is a format error."""
        self.check(bytes.fromhex("40010001f0"), Action.RESET, 1)
        self.check(bytes.fromhex("400100010f"), Action.RESET, 1)
        self.check(bytes.fromhex("40010001bf"), Action.RESET, 1)

    def test_marker_without_payload(self) -> None:
        self.check(bytes.fromhex("40010001ff"), Action.RESET, 1)
        self.check(bytes.fromhex("40010001b161ff"), Action.RESET, 1)

    def test_option_past_end(self) -> None:
        self.check(bytes.fromhex("40010001b361"), Action.RESET, 1)

    def test_extended_past_end(self) -> None:
        for tail in ("d0", "e000", "0d", "0e00", "dd00"):
            self.check(bytes.fromhex("40010001" + tail), Action.RESET, 1)


class OptionTests(SynchronousTestCase):
    """Option accessors and the section 5.4 checks."""

    def test_accessors(self) -> None:
        m = Message(
            CON,
            Code.GET,
            1,
            b"t",
            (
                *path_options(["ps", "a+b", "#"]),
                *query_options(["qos=1", "retain"]),
                Option.uint(N.OBSERVE, 0),
                Option.uint(N.ACCEPT, 50),
                Option.uint(N.CONTENT_FORMAT, 0),
                Option(N.ETAG, b"\x01\x02"),
                BlockValue(2, True, 6).option(N.BLOCK2),
                BlockValue(0, False, 2).option(N.BLOCK1),
                Option.uint(N.SIZE1, 5000),
                Option.uint(N.SIZE2, 70000),
                Option.string(N.LOCATION_PATH, "x"),
            ),
        )
        m = decode(encode(m))
        self.assertEqual(m.uri_path, ["ps", "a+b", "#"])
        self.assertEqual(m.uri_query, ["qos=1", "retain"])
        self.assertEqual(m.observe, 0)
        self.assertEqual(m.first(N.OBSERVE), b"")
        self.assertEqual(m.accept, 50)
        self.assertEqual(m.content_format, 0)
        self.assertEqual(m.etag, b"\x01\x02")
        self.assertEqual(m.block2, BlockValue(2, True, 6))
        self.assertEqual(m.block1, BlockValue(0, False, 2))
        self.assertEqual((m.size1, m.size2), (5000, 70000))
        self.assertEqual(m.location_path, ["x"])
        self.assertTrue(m.has(N.SIZE1))
        self.assertFalse(m.has(N.MAX_AGE))
        self.assertEqual(m.bad_options(), [])
        self.assertIsNone(Message(CON, Code.GET, 1).observe)
        self.assertIsNone(Message(CON, Code.GET, 1).block2)

    def test_percent_not_decoded(self) -> None:
        """Segments are raw: C{%2B} on the wire stays C{%2B}."""
        m = decode(encode(Message(CON, Code.GET, 1, options=tuple(path_options(["a%2Bb"])))))
        self.assertEqual(m.uri_path, ["a%2Bb"])

    def test_bad_utf8(self) -> None:
        """A Uri-Path or Uri-Query that is not UTF-8 answers 4.00."""
        for number, attr in ((N.URI_PATH, "uri_path"), (N.URI_QUERY, "uri_query")):
            m = Message(CON, Code.GET, 1, options=(Option(number, b"\xff\xfe"),))
            e = self.assertRaises(CoAPOptionError, getattr, m, attr)
            self.assertEqual(e.code, Code.BAD_REQUEST)
            self.assertIn("4.00", str(e))

    def test_unknown_critical(self) -> None:
        """Unknown odd options are reported; unknown even ones are not."""
        m = decode(bytes.fromhex("40010001207000"))  # option 2 (elective), 9 (critical)
        self.assertEqual([o.number for o in m.options], [2, 9, 9])
        self.assertEqual(m.bad_options(), [9, 9])

    def test_length_out_of_range(self) -> None:
        """Section 5.4.3: a critical option with a bad length is refused."""
        m = Message(CON, Code.GET, 1, options=(Option(N.URI_HOST, b""), Option(N.OBSERVE, b"1234")))
        self.assertEqual(m.bad_options(), [N.URI_HOST])

    def test_repeated_not_repeatable(self) -> None:
        """Section 5.4.5: a second Uri-Host is refused; a second Content-Format ignored."""
        m = Message(
            CON,
            Code.GET,
            1,
            options=(
                Option.string(N.URI_HOST, "a"),
                Option.string(N.URI_HOST, "b"),
                Option.uint(N.CONTENT_FORMAT, 0),
                Option.uint(N.CONTENT_FORMAT, 50),
                Option.string(N.URI_PATH, "x"),
                Option.string(N.URI_PATH, "y"),
            ),
        )
        self.assertEqual(m.bad_options(), [N.URI_HOST])
        self.assertEqual(m.content_format, 0)

    def test_with_without(self) -> None:
        m = Message(ACK, Code.CONTENT, 1).with_options(
            Option.uint(N.SIZE2, 3), Option.uint(N.OBSERVE, 2)
        )
        self.assertEqual([o.number for o in m.options], [N.OBSERVE, N.SIZE2])
        self.assertEqual(m.without_options(N.OBSERVE).options, (Option(N.SIZE2, b"\x03"),))

    def test_uint_bytes(self) -> None:
        self.assertEqual(uint_bytes(0), b"")
        self.assertEqual(uint_bytes(255), b"\xff")
        self.assertEqual(uint_bytes(256), b"\x01\x00")
        self.assertRaises(ValueError, uint_bytes, -1)

    def test_code_text(self) -> None:
        self.assertEqual(code_text(Code.CONTENT), "2.05 Content")
        self.assertEqual(code_text(Code.GET), "0.01 Get")
        self.assertEqual(code_text(Code.CONTINUE), "2.31 Continue")
        self.assertEqual(code_text(0x67), "3.07")
        self.assertEqual(Code.REQUEST_ENTITY_TOO_LARGE, 0x8D)
        self.assertEqual(Code.TOO_MANY_REQUESTS, 0x9D)
        self.assertIn("ACK 2.05 Content mid=1", str(Message(ACK, Code.CONTENT, 1)))


class BlockValueTests(SynchronousTestCase):
    """RFC 7959 section 2.2."""

    def test_values(self) -> None:
        """NUM << 4 | M << 3 | SZX, in the fewest bytes."""
        self.assertEqual(BlockValue(0, False, 0).option(N.BLOCK2).value, b"")
        self.assertEqual(BlockValue(1, True, 6).to_uint(), 0x1E)
        self.assertEqual(BlockValue(0xFFFFF, False, 6).option(N.BLOCK1).value, b"\xff\xff\xf6")
        self.assertEqual(BlockValue.from_uint(0x1E), BlockValue(1, True, 6))
        self.assertEqual(BlockValue(3, False, 2).size, 64)
        self.assertEqual(BlockValue(3, False, 2).offset, 192)

    def test_reserved_szx(self) -> None:
        e = self.assertRaises(CoAPOptionError, BlockValue.from_uint, 0x17)
        self.assertEqual(e.code, Code.BAD_REQUEST)
        m = Message(CON, Code.PUT, 1, options=(Option.uint(N.BLOCK1, 7),))
        self.assertRaises(CoAPOptionError, getattr, m, "block1")

    def test_out_of_range(self) -> None:
        self.assertRaises(ValueError, BlockValue(0, False, 7).to_uint)
        self.assertRaises(ValueError, BlockValue(1 << 20, False, 0).to_uint)
        self.assertRaises(ValueError, BlockValue(-1, False, 0).to_uint)

    def test_szx_for(self) -> None:
        self.assertEqual(
            [BlockValue.szx_for(s) for s in (1, 16, 31, 32, 512, 1024, 5000)], [0, 0, 0, 1, 5, 6, 6]
        )


class EncodeErrorTests(SynchronousTestCase):
    """Encoding refuses what the header cannot hold."""

    def test_errors(self) -> None:
        for m in (
            Message(CON, Code.GET, -1),
            Message(CON, Code.GET, 0x10000),
            Message(CON, 256, 1),
            Message(CON, Code.GET, 1, b"123456789"),
            Message(CON, Code.EMPTY, 1, b"t"),
            Message(CON, Code.EMPTY, 1, payload=b"x"),
            Message(CON, Code.GET, 1, options=(Option(-1),)),
            Message(CON, Code.GET, 1, options=(Option(11, b"x" * 65805),)),
            Message(CON, Code.GET, 1, options=(Option(65805 + 1),)),
        ):
            self.assertRaises(ValueError, encode, m)

    def test_largest(self) -> None:
        """The largest option number and value length the format allows."""
        m = Message(CON, Code.GET, 1, options=(Option(65804, b"x" * 65804),))
        self.assertEqual(decode(encode(m)), m)


options = st.lists(
    st.builds(
        Option,
        st.one_of(st.sampled_from(list(N)), st.integers(0, 65804)),
        st.one_of(st.binary(max_size=20), st.binary(min_size=260, max_size=300)),
    ),
    max_size=6,
)
messages = st.builds(
    Message,
    st.sampled_from(list(MessageType)),
    st.integers(1, 255),
    st.integers(0, 0xFFFF),
    st.binary(max_size=8),
    options.map(tuple),
    st.binary(max_size=40),
)


class PropertyTests(SynchronousTestCase):
    """Round trips and fuzzing with hypothesis."""

    @given(messages)
    def test_round_trip(self, m: Message) -> None:
        """C{decode(encode(m)) == m} for any message with a non-empty code."""
        self.assertEqual(decode(encode(m)), m)

    @given(st.binary(max_size=64))
    def test_fuzz(self, wire: bytes) -> None:
        """Arbitrary bytes decode or raise L{CoAPFormatError}, nothing else."""
        try:
            m = decode(wire)
        except CoAPFormatError as e:
            self.assertIsInstance(e.action, Action)
        else:
            self.assertEqual(encode(m), wire)

    @given(messages, st.integers(0, 200))
    def test_truncated(self, m: Message, cut: int) -> None:
        """Cutting an encoding short never raises anything else."""
        try:
            decode(encode(m)[:cut])
        except CoAPFormatError:
            pass


def aio(mtype: aiocoap.numbers.types.Type, code: int, mid: int, token: bytes) -> aiocoap.Message:
    m = aiocoap.Message(code=aionumbers.codes.Code(code), token=token)
    m.mtype = mtype
    m.mid = mid
    return m


class AiocoapTests(SynchronousTestCase):
    """The same bytes as aiocoap, the client the integration tests use."""

    def test_aiocoap_to_ours(self) -> None:
        a = aio(aiocoap.CON, aiocoap.GET.value, 0x1234, b"\x01\x02\x03")
        a.opt.uri_path = ("ps", "sensors", "+")
        a.opt.uri_query = ("qos=1",)
        a.opt.observe = 0
        a.opt.block2 = aiocoap.optiontypes.BlockOption.BlockwiseTuple(3, False, 4)
        a.opt.size1 = 70000
        m = decode(a.encode())
        self.assertEqual(
            (m.type, m.code, m.message_id, m.token), (CON, Code.GET, 0x1234, b"\x01\x02\x03")
        )
        self.assertEqual(m.uri_path, ["ps", "sensors", "+"])
        self.assertEqual(m.uri_query, ["qos=1"])
        self.assertEqual(m.observe, 0)
        self.assertEqual(m.block2, BlockValue(3, False, 4))
        self.assertEqual(m.size1, 70000)
        self.assertEqual(encode(m), a.encode())

    def test_ours_to_aiocoap(self) -> None:
        m = Message(
            ACK,
            Code.CONTENT,
            0xBEEF,
            b"tok",
            (
                Option.uint(N.OBSERVE, 70000),
                Option.uint(N.CONTENT_FORMAT, 50),
                Option(N.ETAG, b"\xaa\xbb"),
                BlockValue(1, True, 6).option(N.BLOCK2),
                Option.uint(N.SIZE2, 3000),
                Option.uint(N.MAX_AGE, 60),
            ),
            b"x" * 1024,
        )
        a = aiocoap.Message.decode(encode(m))
        self.assertEqual(
            (a.mtype, a.code, a.mid, a.token), (aiocoap.ACK, aiocoap.CONTENT, 0xBEEF, b"tok")
        )
        self.assertEqual(a.opt.observe, 70000)
        self.assertEqual(int(a.opt.content_format), 50)
        self.assertEqual(a.opt.etags, (b"\xaa\xbb",))
        self.assertEqual(tuple(a.opt.block2), (1, True, 6))
        self.assertEqual((a.opt.size2, a.opt.max_age), (3000, 60))
        self.assertEqual(a.payload, b"x" * 1024)

    def test_extended_deltas_agree(self) -> None:
        """Long values and large option numbers byte for byte with aiocoap."""
        m = Message(
            NON,
            Code.POST,
            7,
            b"",
            (
                Option.string(N.URI_PATH, "p" * 200),
                Option.string(N.URI_QUERY, "q" * 300),
                Option.uint(N.SIZE1, 1),
            ),
            b"body",
        )
        a = aiocoap.Message.decode(encode(m))
        self.assertEqual(a.opt.uri_path, ("p" * 200,))
        self.assertEqual(a.opt.uri_query, ("q" * 300,))
        b = aio(aiocoap.NON, aiocoap.POST.value, 7, b"")
        b.opt.uri_path, b.opt.uri_query, b.opt.size1, b.payload = (
            a.opt.uri_path,
            a.opt.uri_query,
            1,
            b"body",
        )
        self.assertEqual(b.encode(), encode(m))
