# -*- test-case-name: tests.transports.coap.test_blockwise -*-
"""
Block-wise transfers (RFC 7959), sans-IO.

L{slice_block2} cuts one block of a representation for a response or
notification (Block2, Size2 and ETag options included), at the smaller of
the client's and the server's block size. L{Block1Assembler} puts a
POST/PUT body back together from Block1 requests, deciding 2.31 Continue,
4.08 Request Entity Incomplete and 4.13 Request Entity Too Large; transfers
that stop half-way are forgotten at a deadline.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from .codec import BlockValue, CoAPOptionError, Code, Message, Option, OptionNumber

__all__ = [
    "BLOCK1_LIFETIME",
    "Block1Assembler",
    "Block1Complete",
    "Block1Continue",
    "Block1Error",
    "Block1Result",
    "BlockSlice",
    "etag_for",
    "slice_block2",
]

#: How long a half-done Block1 transfer waits for its next block, seconds:
#: EXCHANGE_LIFETIME, the RFC 7959 section 2.4 hint for keeping state.
BLOCK1_LIFETIME = 247.0

#: The options that identify the target of a Block1 transfer besides the
#: endpoint (RFC 7959 section 2.5: the request URI).
_URI_OPTIONS = (
    OptionNumber.URI_HOST,
    OptionNumber.URI_PORT,
    OptionNumber.URI_PATH,
    OptionNumber.URI_QUERY,
)


def etag_for(body: bytes) -> bytes:
    """
    An 8-byte ETag for a representation, so that a client fetching it block
    by block sees when it changed in between (RFC 7959 section 2.4).
    """
    return hashlib.blake2b(body, digest_size=8).digest()


@dataclass(frozen=True, slots=True)
class BlockSlice:
    """
    One block of a representation.

    @ivar payload: the block's bytes (the whole body if it fits in one).
    @ivar block: the Block2 value sent, or C{None} when the body fits in one
        block and the client did not ask for blocks.
    @ivar options: the options to add to the response: Block2, Size2 (on
        the first block, or when the client sent Size2) and ETag (when
        blocks are used), in no particular order.
    """

    payload: bytes
    block: BlockValue | None
    options: tuple[Option, ...]


def slice_block2(
    body: bytes,
    requested: BlockValue | None,
    block_size: int,
    *,
    etag: bytes | None = None,
    size2_requested: bool = False,
) -> BlockSlice:
    """
    The block of C{body} that answers a request (RFC 7959 section 2.4).

    @param requested: the request's Block2 option, or C{None}.
    @param block_size: the server's block size, 16..1024 bytes (the
        listener's C{block_size}); the smaller of it and the client's is used,
        and the block number is scaled so the offset the client asked for
        stays the same.
    @param etag: the representation's ETag; L{etag_for} of the body if
        C{None}. Sent only when the body is cut into blocks.
    @param size2_requested: the request carried Size2 (asking for the size).
    @raise CoAPOptionError: 4.00 Bad Request for a block beyond the end.
    """
    server_szx = BlockValue.szx_for(block_size)
    extra: list[Option] = []
    if requested is None:
        if len(body) <= 1 << (server_szx + 4):
            if size2_requested:
                extra.append(Option.uint(OptionNumber.SIZE2, len(body)))
            return BlockSlice(body, None, tuple(extra))
        szx, num = server_szx, 0
    elif requested.szx <= server_szx:
        szx, num = requested.szx, requested.num
    else:
        szx = server_szx
        num = requested.offset >> (szx + 4)
    size = 1 << (szx + 4)
    offset = num * size
    if offset >= len(body) and not (offset == 0 and not body):
        # RFC 7959 names no code for this; 4.00 as aiocoap answers it.
        raise CoAPOptionError(Code.BAD_REQUEST, f"block {num} is beyond the end")
    chunk = body[offset : offset + size]
    block = BlockValue(num, offset + size < len(body), szx)
    extra.append(block.option(OptionNumber.BLOCK2))
    if num == 0 or size2_requested:
        extra.append(Option.uint(OptionNumber.SIZE2, len(body)))
    extra.append(Option(OptionNumber.ETAG, etag if etag is not None else etag_for(body)))
    return BlockSlice(chunk, block, tuple(extra))


# --- Block1 ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block1Complete:
    """
    The request body is whole: process the request. Add C{options} (the
    Block1 option acknowledging the last block, if blocks were used) to the
    final response.
    """

    body: bytes
    options: tuple[Option, ...] = ()


@dataclass(frozen=True, slots=True)
class Block1Continue:
    """A block was taken and more are expected: answer 2.31 Continue with C{options}."""

    options: tuple[Option, ...]


@dataclass(frozen=True, slots=True)
class Block1Error:
    """
    The transfer failed and is forgotten: answer C{code} (4.00, 4.08 or
    4.13) with C{options} (Size1 for 4.13) and C{detail} as diagnostic.
    """

    code: Code
    detail: str
    options: tuple[Option, ...] = ()


Block1Result = Block1Complete | Block1Continue | Block1Error


@dataclass(slots=True)
class _Transfer:
    body: bytearray
    deadline: float


class Block1Assembler:
    """
    Reassembles request bodies sent with Block1, one transfer per endpoint
    and request URI (RFC 7959 section 2.5), the blocks in order.

    @param max_size: the largest body accepted (the listener's
        C{max_payload}); larger ones get 4.13 with Size1.
    @param block_size: the block size the server asks for in 2.31 answers
        (16..1024); a client sending larger blocks is told to use it.
    @param lifetime: how long a transfer waits for its next block.
    @param max_transfers: transfers kept at once; the oldest goes first.
    """

    def __init__(
        self,
        max_size: int,
        block_size: int = 1024,
        *,
        lifetime: float = BLOCK1_LIFETIME,
        max_transfers: int = 1024,
    ) -> None:
        self._max_size = max_size
        self._szx = BlockValue.szx_for(block_size)
        self._lifetime = lifetime
        self._max_transfers = max_transfers
        self._transfers: OrderedDict[Hashable, _Transfer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._transfers)

    def _too_large(self, detail: str) -> Block1Error:
        size1 = Option.uint(OptionNumber.SIZE1, self._max_size)
        return Block1Error(Code.REQUEST_ENTITY_TOO_LARGE, detail, (size1,))

    def receive(self, remote: Hashable, request: Message, now: float) -> Block1Result:
        """
        Take one request's payload.

        @param remote: the endpoint's address, as for the message layer.
        @param request: the (deduplicated) POST or PUT.
        """
        key = (remote, request.code) + tuple(
            (o.number, o.value) for o in request.options if o.number in _URI_OPTIONS
        )
        try:
            block = request.block1
        except CoAPOptionError as e:
            self._transfers.pop(key, None)
            return Block1Error(e.code, e.detail)
        if block is None:
            self._transfers.pop(key, None)
            if len(request.payload) > self._max_size:
                return self._too_large(f"body over {self._max_size} bytes")
            return Block1Complete(request.payload)
        size1 = request.size1
        if size1 is not None and size1 > self._max_size:
            self._transfers.pop(key, None)
            return self._too_large(f"announced size {size1} over {self._max_size} bytes")
        if len(request.payload) > block.size or (block.more and len(request.payload) != block.size):
            self._transfers.pop(key, None)
            return Block1Error(Code.BAD_REQUEST, "block payload does not match its size")
        if block.num == 0:
            transfer = _Transfer(bytearray(), 0.0)
            self._transfers.pop(key, None)
        else:
            found = self._transfers.get(key)
            if found is None or found.deadline <= now or len(found.body) != block.offset:
                self._transfers.pop(key, None)
                return Block1Error(
                    Code.REQUEST_ENTITY_INCOMPLETE, f"block {block.num} is not the one expected"
                )
            transfer = found
        transfer.body += request.payload
        if len(transfer.body) > self._max_size:
            self._transfers.pop(key, None)
            return self._too_large(f"body over {self._max_size} bytes")
        if not block.more:
            self._transfers.pop(key, None)
            last = BlockValue(block.num, False, block.szx).option(OptionNumber.BLOCK1)
            return Block1Complete(bytes(transfer.body), (last,))
        transfer.deadline = now + self._lifetime
        self._transfers[key] = transfer
        self._transfers.move_to_end(key)
        if len(self._transfers) > self._max_transfers:
            self._transfers.popitem(last=False)
        # The 2.31 echoes this block's number with our preferred size
        # (section 2.3, figure 4: "1:0/1/128" answered with "1:0/1/32"); a
        # client sending bigger blocks goes on at offset / our size.
        more = BlockValue(block.num, True, min(block.szx, self._szx))
        return Block1Continue((more.option(OptionNumber.BLOCK1),))

    def next_deadline(self) -> float | None:
        """When the oldest transfer expires, or C{None} if none is in progress."""
        return min((t.deadline for t in self._transfers.values()), default=None)

    def expire(self, now: float) -> int:
        """Forget transfers whose deadline passed; how many were dropped."""
        stale = [k for k, t in self._transfers.items() if t.deadline <= now]
        for k in stale:
            del self._transfers[k]
        return len(stale)
