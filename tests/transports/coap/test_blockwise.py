"""
Tests for L{mqttx.transports.coap.blockwise}: Block2 slicing (exact
multiples, last block, SZX negotiation, out of range) and Block1 assembly
(in order, out of order, too large, expiry), RFC 7959.
"""

from __future__ import annotations

import aiocoap  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mqttx.transports.coap.blockwise import (
    Block1Assembler,
    Block1Complete,
    Block1Continue,
    Block1Error,
    etag_for,
    slice_block2,
)
from mqttx.transports.coap.codec import (
    BlockValue,
    CoAPOptionError,
    Code,
    Message,
    MessageType,
    Option,
    OptionNumber,
    decode,
    encode,
)

N = OptionNumber
A = ("192.0.2.1", 5683)
B = ("192.0.2.2", 5683)


def numbers(options: tuple[Option, ...]) -> dict[int, bytes]:
    return {o.number: o.value for o in options}


class Block2Tests(SynchronousTestCase):
    """RFC 7959 section 2.4: Block2 in responses."""

    def test_fits(self) -> None:
        """A body that fits one block goes whole, without block options."""
        for body in (b"", b"x", b"y" * 1024):
            s = slice_block2(body, None, 1024)
            self.assertEqual((s.payload, s.block, s.options), (body, None, ()))

    def test_fits_size2_requested(self) -> None:
        s = slice_block2(b"abc", None, 1024, size2_requested=True)
        self.assertEqual(s.options, (Option.uint(N.SIZE2, 3),))

    def test_first_and_last(self) -> None:
        """1025 bytes: a full first block with Size2 and ETag, then one byte."""
        body = b"a" * 1024 + b"b"
        first = slice_block2(body, None, 1024)
        self.assertEqual(first.payload, b"a" * 1024)
        self.assertEqual(first.block, BlockValue(0, True, 6))
        opts = numbers(first.options)
        self.assertEqual(opts[N.SIZE2], (1025).to_bytes(2, "big"))
        self.assertEqual(opts[N.ETAG], etag_for(body))
        self.assertEqual(opts[N.BLOCK2], BlockValue(0, True, 6).option(N.BLOCK2).value)
        last = slice_block2(body, BlockValue(1, False, 6), 1024)
        self.assertEqual(last.payload, b"b")
        self.assertEqual(last.block, BlockValue(1, False, 6))
        self.assertNotIn(N.SIZE2, numbers(last.options))
        self.assertEqual(numbers(last.options)[N.ETAG], etag_for(body))

    def test_exact_multiple(self) -> None:
        """A body of exactly two blocks: the second has M=0; a third is 4.00."""
        body = bytes(range(256)) * 8
        self.assertEqual(
            slice_block2(body, BlockValue(1, False, 6), 1024).block, BlockValue(1, False, 6)
        )
        e = self.assertRaises(CoAPOptionError, slice_block2, body, BlockValue(2, False, 6), 1024)
        self.assertEqual(e.code, Code.BAD_REQUEST)

    def test_client_smaller(self) -> None:
        """The client's smaller block size is used."""
        s = slice_block2(b"x" * 100, BlockValue(0, False, 2), 1024)
        self.assertEqual((len(s.payload), s.block), (64, BlockValue(0, True, 2)))

    def test_server_smaller(self) -> None:
        """
        A client asking for bigger blocks gets the server's size, the block
        number scaled to keep the offset.
        """
        body = bytes(range(256)) * 10
        s = slice_block2(body, BlockValue(1, False, 6), 256)
        self.assertEqual(s.block, BlockValue(4, True, 4))
        self.assertEqual(s.payload, body[1024:1280])

    def test_block_size_not_power_of_two(self) -> None:
        """A configured size between powers of two rounds down."""
        s = slice_block2(b"x" * 1000, None, 500)
        self.assertEqual(s.block, BlockValue(0, True, 4))

    def test_empty_body_requested(self) -> None:
        s = slice_block2(b"", BlockValue(0, False, 6), 1024)
        self.assertEqual((s.payload, s.block), (b"", BlockValue(0, False, 6)))

    def test_etag(self) -> None:
        """A given ETag is used; the default changes with the body."""
        s = slice_block2(b"x" * 2000, None, 1024, etag=b"\x01")
        self.assertEqual(numbers(s.options)[N.ETAG], b"\x01")
        self.assertNotEqual(etag_for(b"a"), etag_for(b"b"))
        self.assertEqual(len(etag_for(b"a")), 8)

    @given(st.binary(max_size=3000), st.integers(0, 6), st.sampled_from([16, 64, 256, 1024]))
    def test_fetch_all(self, body: bytes, client_szx: int, block_size: int) -> None:
        """A client fetching block after block gets the body back."""
        got = b""
        requested = BlockValue(0, False, client_szx)
        while True:
            s = slice_block2(body, requested, block_size)
            assert s.block is not None
            self.assertEqual(s.block.offset, len(got))
            got += s.payload
            if not s.block.more:
                break
            requested = BlockValue(s.block.num + 1, False, s.block.szx)
        self.assertEqual(got, body)


def put(
    num: int | None,
    more: bool,
    szx: int,
    payload: bytes,
    path: str = "t",
    size1: int | None = None,
    token: bytes = b"tk",
) -> Message:
    options = [Option.string(N.URI_PATH, "ps"), Option.string(N.URI_PATH, path)]
    if num is not None:
        options.append(BlockValue(num, more, szx).option(N.BLOCK1))
    if size1 is not None:
        options.append(Option.uint(N.SIZE1, size1))
    return Message(MessageType.CON, Code.PUT, 1, token, tuple(options), payload)


def block1(result: Block1Complete | Block1Continue | Block1Error) -> BlockValue:
    return BlockValue.from_uint(int.from_bytes(numbers(result.options)[N.BLOCK1], "big"))


class Block1Tests(SynchronousTestCase):
    """RFC 7959 sections 2.3 and 2.5: Block1 in requests."""

    def setUp(self) -> None:
        self.asm = Block1Assembler(max_size=200, block_size=1024, lifetime=60)

    def test_no_block(self) -> None:
        self.assertEqual(
            self.asm.receive(A, put(None, False, 0, b"abc"), 0), Block1Complete(b"abc")
        )

    def test_no_block_too_large(self) -> None:
        """A single payload over the maximum: 4.13 with Size1."""
        r = self.asm.receive(A, put(None, False, 0, b"x" * 201), 0)
        assert isinstance(r, Block1Error)
        self.assertEqual(r.code, Code.REQUEST_ENTITY_TOO_LARGE)
        self.assertEqual(r.options, (Option.uint(N.SIZE1, 200),))

    def test_in_order(self) -> None:
        """Three 64-byte blocks: 2.31, 2.31, then the body with Block1 M=0."""
        body = bytes(range(150))
        r0 = self.asm.receive(A, put(0, True, 2, body[:64]), 0)
        r1 = self.asm.receive(A, put(1, True, 2, body[64:128], token=b"other"), 1)
        r2 = self.asm.receive(A, put(2, False, 2, body[128:]), 2)
        self.assertIsInstance(r0, Block1Continue)
        self.assertEqual(block1(r0), BlockValue(0, True, 2))
        self.assertEqual(block1(r1), BlockValue(1, True, 2))
        assert isinstance(r2, Block1Complete)
        self.assertEqual(r2.body, body)
        self.assertEqual(block1(r2), BlockValue(2, False, 2))
        self.assertEqual(len(self.asm), 0)

    def test_single_block(self) -> None:
        """Block 0 with M=0 is the whole body."""
        r = self.asm.receive(A, put(0, False, 6, b"abc"), 0)
        self.assertEqual(r, Block1Complete(b"abc", (BlockValue(0, False, 6).option(N.BLOCK1),)))

    def test_out_of_order(self) -> None:
        """A skipped block is 4.08 and ends the transfer."""
        self.asm.receive(A, put(0, True, 0, b"x" * 16), 0)
        r = self.asm.receive(A, put(2, True, 0, b"x" * 16), 0)
        assert isinstance(r, Block1Error)
        self.assertEqual(r.code, Code.REQUEST_ENTITY_INCOMPLETE)
        r = self.asm.receive(A, put(1, True, 0, b"x" * 16), 0)
        self.assertEqual(r.code, Code.REQUEST_ENTITY_INCOMPLETE)  # type: ignore[union-attr]

    def test_missing_first(self) -> None:
        r = self.asm.receive(A, put(1, False, 0, b"x"), 0)
        self.assertEqual(r.code, Code.REQUEST_ENTITY_INCOMPLETE)  # type: ignore[union-attr]

    def test_too_large_accumulated(self) -> None:
        """The block that takes the body over the maximum gets 4.13 with Size1."""
        for num in range(3):
            self.assertIsInstance(
                self.asm.receive(A, put(num, True, 2, b"x" * 64), 0), Block1Continue
            )
        r = self.asm.receive(A, put(3, True, 2, b"x" * 64), 0)
        assert isinstance(r, Block1Error)
        self.assertEqual(r.code, Code.REQUEST_ENTITY_TOO_LARGE)
        self.assertEqual(r.options, (Option.uint(N.SIZE1, 200),))
        self.assertEqual(len(self.asm), 0)

    def test_announced_too_large(self) -> None:
        """Size1 over the maximum is refused at the first block."""
        r = self.asm.receive(A, put(0, True, 2, b"x" * 64, size1=5000), 0)
        self.assertEqual(r.code, Code.REQUEST_ENTITY_TOO_LARGE)  # type: ignore[union-attr]

    def test_wrong_payload_size(self) -> None:
        """M=1 with a short block, or a block over its size, is 4.00."""
        for req in (put(0, True, 2, b"x" * 63), put(0, False, 2, b"x" * 65)):
            r = self.asm.receive(A, req, 0)
            self.assertEqual(r.code, Code.BAD_REQUEST)  # type: ignore[union-attr]

    def test_reserved_szx(self) -> None:
        req = put(None, False, 0, b"x").with_options(Option.uint(N.BLOCK1, 0x0F))
        r = self.asm.receive(A, req, 0)
        self.assertEqual(r.code, Code.BAD_REQUEST)  # type: ignore[union-attr]

    def test_server_prefers_smaller(self) -> None:
        """
        RFC 7959 figure 4: a 128-byte first block answered 0/1/32; the
        client goes on with block 4 of 32 bytes.
        """
        asm = Block1Assembler(max_size=1000, block_size=32)
        body = bytes(range(180))
        r = asm.receive(A, put(0, True, 3, body[:128]), 0)
        self.assertEqual(block1(r), BlockValue(0, True, 1))
        r = asm.receive(A, put(4, True, 1, body[128:160]), 0)
        self.assertEqual(block1(r), BlockValue(4, True, 1))
        r = asm.receive(A, put(5, False, 1, body[160:]), 0)
        assert isinstance(r, Block1Complete)
        self.assertEqual(r.body, body)

    def test_separate_transfers(self) -> None:
        """Transfers are per remote and per URI, interleaved freely."""
        self.asm.receive(A, put(0, True, 0, b"a" * 16, path="one"), 0)
        self.asm.receive(A, put(0, True, 0, b"b" * 16, path="two"), 0)
        self.asm.receive(B, put(0, True, 0, b"c" * 16, path="one"), 0)
        self.assertEqual(len(self.asm), 3)
        r = self.asm.receive(A, put(1, False, 0, b"!", path="two"), 0)
        self.assertEqual(r.body, b"b" * 16 + b"!")  # type: ignore[union-attr]
        r = self.asm.receive(B, put(1, False, 0, b"?", path="one"), 0)
        self.assertEqual(r.body, b"c" * 16 + b"?")  # type: ignore[union-attr]

    def test_restart(self) -> None:
        """A new block 0 starts the transfer over."""
        self.asm.receive(A, put(0, True, 0, b"a" * 16), 0)
        self.asm.receive(A, put(0, True, 0, b"b" * 16), 0)
        r = self.asm.receive(A, put(1, False, 0, b"c"), 0)
        self.assertEqual(r.body, b"b" * 16 + b"c")  # type: ignore[union-attr]

    def test_plain_request_ends_transfer(self) -> None:
        self.asm.receive(A, put(0, True, 0, b"a" * 16), 0)
        self.asm.receive(A, put(None, False, 0, b"whole"), 0)
        self.assertEqual(len(self.asm), 0)

    def test_expiry(self) -> None:
        """An abandoned transfer is forgotten at its deadline."""
        self.assertIsNone(self.asm.next_deadline())
        self.asm.receive(A, put(0, True, 0, b"a" * 16), 10)
        self.asm.receive(B, put(0, True, 0, b"a" * 16), 20)
        self.assertEqual(self.asm.next_deadline(), 70)
        self.assertEqual(self.asm.expire(69.9), 0)
        self.assertEqual(self.asm.expire(70), 1)
        self.assertEqual(self.asm.next_deadline(), 80)
        # Past its deadline a transfer is dead even before expire() runs.
        r = self.asm.receive(B, put(1, False, 0, b"x"), 80)
        self.assertEqual(r.code, Code.REQUEST_ENTITY_INCOMPLETE)  # type: ignore[union-attr]

    def test_deadline_refreshed(self) -> None:
        self.asm.receive(A, put(0, True, 0, b"a" * 16), 0)
        self.asm.receive(A, put(1, True, 0, b"a" * 16), 50)
        self.assertEqual(self.asm.next_deadline(), 110)

    def test_cap(self) -> None:
        """Over max_transfers the least recently used transfer goes."""
        asm = Block1Assembler(max_size=1000, max_transfers=2)
        for path in ("a", "b", "c"):
            asm.receive(A, put(0, True, 0, b"x" * 16, path=path), 0)
        self.assertEqual(len(asm), 2)
        r = asm.receive(A, put(1, False, 0, b"y", path="a"), 0)
        self.assertEqual(r.code, Code.REQUEST_ENTITY_INCOMPLETE)  # type: ignore[union-attr]
        r = asm.receive(A, put(1, False, 0, b"y", path="c"), 0)
        self.assertIsInstance(r, Block1Complete)

    @given(st.binary(max_size=600), st.integers(0, 6))
    def test_upload_all(self, body: bytes, szx: int) -> None:
        """A client sending every block in order gets the body assembled."""
        asm = Block1Assembler(max_size=1000, block_size=1024)
        size = 1 << (szx + 4)
        num = 0
        while True:
            chunk = body[num * size : (num + 1) * size]
            more = (num + 1) * size < len(body)
            r = asm.receive(A, put(num, more, szx, chunk), 0)
            if not more:
                break
            self.assertIsInstance(r, Block1Continue)
            num += 1
        assert isinstance(r, Block1Complete)
        self.assertEqual(r.body, body)


class AiocoapBlockwiseTests(SynchronousTestCase):
    """aiocoap's own block-wise helpers agree with ours on the wire."""

    def test_aiocoap_upload(self) -> None:
        """Blocks cut by aiocoap from a PUT reassemble to its body."""
        body = bytes(range(256)) * 5
        request = aiocoap.Message(code=aiocoap.PUT, uri_path=("ps", "t"), payload=body)
        asm = Block1Assembler(max_size=4096)
        for num in range(5):
            blk = request._extract_block(num, 4, 1024)
            blk.mtype, blk.mid, blk.token = aiocoap.CON, num, b"t"
            result = asm.receive(A, decode(blk.encode()), 0)
        assert isinstance(result, Block1Complete)
        self.assertEqual(result.body, body)

    def test_aiocoap_download(self) -> None:
        """aiocoap's client-side reassembly takes our Block2 responses, ETag included."""
        body = bytes(range(256)) * 5 + b"end"
        assembled = None
        num = 0
        while True:
            s = slice_block2(body, BlockValue(num, False, 6) if num else None, 1024)
            wire = encode(Message(MessageType.ACK, Code.CONTENT, num, b"t", s.options, s.payload))
            response = aiocoap.Message.decode(wire)
            if assembled is None:
                assembled = response
                self.assertEqual(response.opt.size2, len(body))
            else:
                assembled._append_response_block(response)
            assert s.block is not None
            if not s.block.more:
                break
            num += 1
        assert assembled is not None
        self.assertEqual(assembled.payload, body)
