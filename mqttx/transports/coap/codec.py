# -*- test-case-name: tests.transports.coap.test_codec -*-
"""
The sans-IO CoAP message codec (RFC 7252 section 3): datagrams to
L{Message} values with L{decode}, and back with L{encode}.

The codec checks what can be checked on one datagram: the header, the token
length, the option deltas and lengths with their extended forms, the payload
marker and the empty-message rules. A bad datagram raises L{CoAPFormatError},
whose C{action} says what RFC 7252 asks the receiver to do with it (reset a
confirmable message, silently ignore anything else).

Options stay raw on the L{Message} (number and value bytes, in the order
sent), so that C{decode(encode(m)) == m}; the accessors (L{Message.uint},
L{Message.uri_path}, L{Message.block2}, ...) interpret them, and
L{Message.bad_options} lists the critical options the receiver must refuse
(section 5.4.1: unrecognised, value length out of range, or repeated when
the option is not repeatable). Elective options with the same faults are
ignored by the accessors, which read the first occurrence.

Strings in options are raw UTF-8 segments: percent-decoding belongs to the
client that turned a URI into options (section 6.4), not to the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum, IntEnum

__all__ = [
    "OPTIONS",
    "Action",
    "BlockValue",
    "CoAPFormatError",
    "CoAPOptionError",
    "Code",
    "Message",
    "MessageType",
    "Option",
    "OptionFormat",
    "OptionNumber",
    "OptionSpec",
    "code_text",
    "decode",
    "encode",
    "query_options",
    "path_options",
    "uint_bytes",
]

VERSION = 1
#: The payload marker (section 3).
PAYLOAD_MARKER = 0xFF
#: The largest option value the 14 extended length form can carry.
MAX_OPTION_LENGTH = 0xFFFF + 269


class MessageType(IntEnum):
    """The 2-bit message type (section 3)."""

    CON = 0
    NON = 1
    ACK = 2
    RST = 3


def _code(cls: int, detail: int) -> int:
    return (cls << 5) | detail


class Code(IntEnum):
    """
    Method and response codes (sections 5.8, 5.9 and 12.1; RFC 7959 2.31,
    4.08 and 4.13; RFC 8516 4.29). The value is the code byte,
    C{class << 5 | detail}; L{code_text} renders it as C{"2.05 Content"}.
    """

    EMPTY = 0
    GET = 1
    POST = 2
    PUT = 3
    DELETE = 4
    FETCH = 5
    PATCH = 6
    IPATCH = 7
    CREATED = _code(2, 1)
    DELETED = _code(2, 2)
    VALID = _code(2, 3)
    CHANGED = _code(2, 4)
    CONTENT = _code(2, 5)
    CONTINUE = _code(2, 31)
    BAD_REQUEST = _code(4, 0)
    UNAUTHORIZED = _code(4, 1)
    BAD_OPTION = _code(4, 2)
    FORBIDDEN = _code(4, 3)
    NOT_FOUND = _code(4, 4)
    METHOD_NOT_ALLOWED = _code(4, 5)
    NOT_ACCEPTABLE = _code(4, 6)
    REQUEST_ENTITY_INCOMPLETE = _code(4, 8)
    PRECONDITION_FAILED = _code(4, 12)
    REQUEST_ENTITY_TOO_LARGE = _code(4, 13)
    UNSUPPORTED_CONTENT_FORMAT = _code(4, 15)
    TOO_MANY_REQUESTS = _code(4, 29)
    INTERNAL_SERVER_ERROR = _code(5, 0)
    NOT_IMPLEMENTED = _code(5, 1)
    BAD_GATEWAY = _code(5, 2)
    SERVICE_UNAVAILABLE = _code(5, 3)
    GATEWAY_TIMEOUT = _code(5, 4)
    PROXYING_NOT_SUPPORTED = _code(5, 5)


def code_text(code: int) -> str:
    """C{"2.05 Content"} for 0x45; C{"3.07"} for a code without a name."""
    dotted = f"{code >> 5}.{code & 0x1F:02d}"
    try:
        name = Code(code).name
    except ValueError:
        return dotted
    return f"{dotted} {name.replace('_', ' ').title()}"


class OptionNumber(IntEnum):
    """The option numbers this codec knows (section 12.2; RFC 7641, 7959)."""

    IF_MATCH = 1
    URI_HOST = 3
    ETAG = 4
    IF_NONE_MATCH = 5
    OBSERVE = 6
    URI_PORT = 7
    LOCATION_PATH = 8
    URI_PATH = 11
    CONTENT_FORMAT = 12
    MAX_AGE = 14
    URI_QUERY = 15
    ACCEPT = 17
    LOCATION_QUERY = 20
    BLOCK2 = 23
    BLOCK1 = 27
    SIZE2 = 28
    PROXY_URI = 35
    PROXY_SCHEME = 39
    SIZE1 = 60


class OptionFormat(Enum):
    """Option value formats (section 3.2)."""

    EMPTY = "empty"
    OPAQUE = "opaque"
    UINT = "uint"
    STRING = "string"


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """What section 5.10 (and RFC 7641, 7959) say about one option number."""

    format: OptionFormat
    min_length: int
    max_length: int
    repeatable: bool = False


_E, _O, _U, _S = OptionFormat.EMPTY, OptionFormat.OPAQUE, OptionFormat.UINT, OptionFormat.STRING
N = OptionNumber

#: The known options. A critical option not in here is refused (4.02).
OPTIONS: dict[int, OptionSpec] = {
    N.IF_MATCH: OptionSpec(_O, 0, 8, repeatable=True),
    N.URI_HOST: OptionSpec(_S, 1, 255),
    N.ETAG: OptionSpec(_O, 1, 8, repeatable=True),
    N.IF_NONE_MATCH: OptionSpec(_E, 0, 0),
    N.OBSERVE: OptionSpec(_U, 0, 3),
    N.URI_PORT: OptionSpec(_U, 0, 2),
    N.LOCATION_PATH: OptionSpec(_S, 0, 255, repeatable=True),
    N.URI_PATH: OptionSpec(_S, 0, 255, repeatable=True),
    N.CONTENT_FORMAT: OptionSpec(_U, 0, 2),
    N.MAX_AGE: OptionSpec(_U, 0, 4),
    N.URI_QUERY: OptionSpec(_S, 0, 255, repeatable=True),
    N.ACCEPT: OptionSpec(_U, 0, 2),
    N.LOCATION_QUERY: OptionSpec(_S, 0, 255, repeatable=True),
    N.BLOCK2: OptionSpec(_U, 0, 3),
    N.BLOCK1: OptionSpec(_U, 0, 3),
    N.SIZE2: OptionSpec(_U, 0, 4),
    N.PROXY_URI: OptionSpec(_S, 1, 1034),
    N.PROXY_SCHEME: OptionSpec(_S, 1, 255),
    N.SIZE1: OptionSpec(_U, 0, 4),
}
del N


class Action(Enum):
    """What the receiver of a malformed datagram does (sections 3, 4.2, 4.3)."""

    #: Drop it without a word: too short to carry a message ID, an unknown
    #: version, or a malformed NON, ACK or RST.
    IGNORE = "ignore"
    #: Reject the confirmable message with an RST carrying its message ID.
    RESET = "reset"


class CoAPFormatError(Exception):
    """
    A datagram that is not a well-formed CoAP message.

    @ivar detail: a short human explanation, for the log line.
    @ivar action: L{Action.RESET} for a malformed CON (section 4.2:
        "rejected"), L{Action.IGNORE} otherwise.
    @ivar message_id: the message ID from the header, or C{None} if the
        datagram was too short to hold one.
    """

    def __init__(self, detail: str, action: Action, message_id: int | None) -> None:
        super().__init__(detail, action, message_id)
        self.detail = detail
        self.action = action
        self.message_id = message_id

    def reset(self) -> Message | None:
        """The RST to send back, or C{None} if the datagram is to be ignored."""
        if self.action is not Action.RESET or self.message_id is None:
            return None
        return Message(MessageType.RST, Code.EMPTY, self.message_id)

    def __str__(self) -> str:
        return f"{self.detail} ({self.action.value})"


class CoAPOptionError(Exception):
    """
    A request option the server cannot accept: answer with C{code}.

    @ivar code: L{Code.BAD_REQUEST} (e.g. a Uri-Path segment that is not
        UTF-8, or a Block option with SZX 7) or L{Code.BAD_OPTION}.
    @ivar detail: a short human explanation, also fit for the diagnostic
        payload of the response.
    """

    def __init__(self, code: Code, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.detail} ({code_text(self.code)})"


def uint_bytes(value: int) -> bytes:
    """The shortest big-endian encoding of a uint option value (0 is empty)."""
    if value < 0:
        raise ValueError(f"negative uint option value {value}")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


@dataclass(frozen=True, slots=True)
class Option:
    """One option occurrence: its number and raw value bytes."""

    number: int
    value: bytes = b""

    @classmethod
    def uint(cls, number: int, value: int) -> Option:
        """A uint option, in as few bytes as possible (section 3.2)."""
        return cls(number, uint_bytes(value))

    @classmethod
    def string(cls, number: int, value: str) -> Option:
        """A string option, UTF-8 encoded."""
        return cls(number, value.encode("utf-8"))

    @property
    def critical(self) -> bool:
        """Odd option numbers are critical (section 5.4.1)."""
        return bool(self.number & 1)


def path_options(segments: Iterable[str], number: int = OptionNumber.URI_PATH) -> list[Option]:
    """
    One Uri-Path (or Location-Path) option per segment, already
    percent-decoded: C{["ps", "a/b"]} for the URI path C{/ps/a%2Fb}.
    """
    return [Option.string(number, s) for s in segments]


def query_options(items: Iterable[str]) -> list[Option]:
    """One Uri-Query option per C{"key=value"} item."""
    return path_options(items, OptionNumber.URI_QUERY)


@dataclass(frozen=True, slots=True)
class BlockValue:
    """
    The value of a Block1 or Block2 option (RFC 7959 section 2.2).

    @ivar num: the block number, at most 2**20 - 1.
    @ivar more: the M bit: more blocks follow (Block1 in a request, Block2
        in a response).
    @ivar szx: the size exponent 0..6; the block size is C{2 ** (szx + 4)}.
    """

    num: int
    more: bool
    szx: int

    @property
    def size(self) -> int:
        """The block size in bytes, 16 to 1024."""
        return 1 << (self.szx + 4)

    @property
    def offset(self) -> int:
        """The offset of this block in the whole body."""
        return self.num * self.size

    def to_uint(self) -> int:
        """The option's uint value; C{ValueError} if a field is out of range."""
        if not 0 <= self.szx <= 6:
            raise ValueError(f"SZX {self.szx} out of range 0..6")
        if not 0 <= self.num < 1 << 20:
            raise ValueError(f"block number {self.num} out of range")
        return (self.num << 4) | (int(self.more) << 3) | self.szx

    def option(self, number: int) -> Option:
        """This value as a Block1 or Block2 option."""
        return Option.uint(number, self.to_uint())

    @classmethod
    def from_uint(cls, value: int) -> BlockValue:
        """
        Parse an option value.

        @raise CoAPOptionError: 4.00 for the reserved SZX 7 (RFC 7959 2.2).
        """
        szx = value & 0x7
        if szx == 7:
            raise CoAPOptionError(Code.BAD_REQUEST, "block option with reserved SZX 7")
        return cls(value >> 4, bool(value & 0x8), szx)

    @staticmethod
    def szx_for(size: int) -> int:
        """The largest SZX whose block size is at most C{size} (16..1024)."""
        return max(0, min(6, size.bit_length() - 5))


@dataclass(frozen=True, slots=True)
class Message:
    """
    One CoAP message (section 3).

    @ivar type: CON, NON, ACK or RST.
    @ivar code: the code byte; a L{Code} member when it has a name.
    @ivar message_id: 0..65535.
    @ivar token: 0 to 8 bytes.
    @ivar options: the options, ordered by number on construction (a stable
        sort, so repeated options keep their order).
    @ivar payload: the payload; empty means no payload marker.
    """

    type: MessageType
    code: int
    message_id: int
    token: bytes = b""
    options: tuple[Option, ...] = field(default=())
    payload: bytes = b""

    def __post_init__(self) -> None:
        opts = tuple(sorted(self.options, key=lambda o: o.number))
        if opts != self.options:
            object.__setattr__(self, "options", opts)

    # --- classification -------------------------------------------------------

    @property
    def is_request(self) -> bool:
        """Code class 0 with a method code (0.01-0.31)."""
        return 1 <= self.code < 32

    @property
    def is_response(self) -> bool:
        """Code classes 2 to 5."""
        return 2 <= self.code >> 5 <= 5

    @property
    def is_empty(self) -> bool:
        """Code 0.00: an empty ACK, an RST, or a CON ping."""
        return self.code == Code.EMPTY

    # --- raw access -----------------------------------------------------------

    def values(self, number: int) -> list[bytes]:
        """The values of every occurrence of option C{number}, in order."""
        return [o.value for o in self.options if o.number == number]

    def first(self, number: int) -> bytes | None:
        """The first value of option C{number}, or C{None} if absent."""
        for o in self.options:
            if o.number == number:
                return o.value
        return None

    def has(self, number: int) -> bool:
        """Whether option C{number} is present."""
        return any(o.number == number for o in self.options)

    def uint(self, number: int) -> int | None:
        """The first value of option C{number} as a uint, or C{None}."""
        value = self.first(number)
        return None if value is None else int.from_bytes(value, "big")

    def bad_options(self, known: dict[int, OptionSpec] = OPTIONS) -> list[int]:
        """
        The critical options the receiver must refuse (section 5.4.1): a
        request answers 4.02 Bad Option, a CON response is rejected with
        RST, a NON is ignored. An option is refused when its number is not
        in C{known}, its value length is out of the spec's range (5.4.3)
        or it repeats although it is not repeatable (5.4.5).

        @return: the option numbers, in order; empty if the message is fine.
        """
        bad: list[int] = []
        previous = -1
        for o in self.options:
            if not o.critical:
                continue
            spec = known.get(o.number)
            if (
                spec is None
                or not spec.min_length <= len(o.value) <= spec.max_length
                or (o.number == previous and not spec.repeatable)
            ):
                bad.append(o.number)
            previous = o.number
        return bad

    # --- typed accessors --------------------------------------------------------

    def _strings(self, number: int, what: str) -> list[str]:
        try:
            return [v.decode("utf-8") for v in self.values(number)]
        except UnicodeDecodeError as e:
            raise CoAPOptionError(Code.BAD_REQUEST, f"{what} is not valid UTF-8") from e

    @property
    def uri_path(self) -> list[str]:
        """
        The Uri-Path segments, raw (no percent-decoding).

        @raise CoAPOptionError: 4.00 if a segment is not UTF-8.
        """
        return self._strings(OptionNumber.URI_PATH, "Uri-Path")

    @property
    def uri_query(self) -> list[str]:
        """
        The Uri-Query items, raw (C{"qos=1"}).

        @raise CoAPOptionError: 4.00 if an item is not UTF-8.
        """
        return self._strings(OptionNumber.URI_QUERY, "Uri-Query")

    @property
    def location_path(self) -> list[str]:
        """The Location-Path segments; L{CoAPOptionError} if not UTF-8."""
        return self._strings(OptionNumber.LOCATION_PATH, "Location-Path")

    @property
    def observe(self) -> int | None:
        """The Observe option (RFC 7641), or C{None}."""
        return self.uint(OptionNumber.OBSERVE)

    @property
    def content_format(self) -> int | None:
        """The Content-Format option, or C{None}."""
        return self.uint(OptionNumber.CONTENT_FORMAT)

    @property
    def accept(self) -> int | None:
        """The Accept option, or C{None}."""
        return self.uint(OptionNumber.ACCEPT)

    @property
    def etag(self) -> bytes | None:
        """The first ETag option, or C{None}."""
        return self.first(OptionNumber.ETAG)

    @property
    def block1(self) -> BlockValue | None:
        """The Block1 option; L{CoAPOptionError} (4.00) for SZX 7."""
        value = self.uint(OptionNumber.BLOCK1)
        return None if value is None else BlockValue.from_uint(value)

    @property
    def block2(self) -> BlockValue | None:
        """The Block2 option; L{CoAPOptionError} (4.00) for SZX 7."""
        value = self.uint(OptionNumber.BLOCK2)
        return None if value is None else BlockValue.from_uint(value)

    @property
    def size1(self) -> int | None:
        """The Size1 option, or C{None}."""
        return self.uint(OptionNumber.SIZE1)

    @property
    def size2(self) -> int | None:
        """The Size2 option, or C{None}."""
        return self.uint(OptionNumber.SIZE2)

    # --- building ---------------------------------------------------------------

    def with_options(self, *options: Option) -> Message:
        """A copy with C{options} added (kept in number order)."""
        return Message(
            self.type, self.code, self.message_id, self.token, self.options + options, self.payload
        )

    def without_options(self, *numbers: int) -> Message:
        """A copy without any occurrence of the option C{numbers}."""
        kept = tuple(o for o in self.options if o.number not in numbers)
        return Message(self.type, self.code, self.message_id, self.token, kept, self.payload)

    def __str__(self) -> str:
        return (
            f"{self.type.name} {code_text(self.code)} mid={self.message_id}"
            f" token={self.token.hex() or '-'} options={len(self.options)}"
            f" payload={len(self.payload)}B"
        )


# --- encoding -------------------------------------------------------------------


def _nibble(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    return 14, (value - 269).to_bytes(2, "big")


def encode(message: Message) -> bytes:
    """
    The datagram for C{message}.

    @raise ValueError: for a field the header cannot hold (message ID,
        code, token over 8 bytes, an option value over 65,804 bytes) or an
        empty message with a token, options or payload.
    """
    if not 0 <= message.message_id <= 0xFFFF:
        raise ValueError(f"message ID {message.message_id} out of range")
    if not 0 <= message.code <= 0xFF:
        raise ValueError(f"code {message.code} out of range")
    if len(message.token) > 8:
        raise ValueError("token longer than 8 bytes")
    if message.code == Code.EMPTY and (message.token or message.options or message.payload):
        raise ValueError("an empty message carries no token, options or payload")
    parts = [
        bytes(
            (
                (VERSION << 6) | (message.type << 4) | len(message.token),
                message.code,
            )
        ),
        message.message_id.to_bytes(2, "big"),
        message.token,
    ]
    previous = 0
    for o in message.options:
        if o.number < 0:
            raise ValueError(f"negative option number {o.number}")
        if len(o.value) > MAX_OPTION_LENGTH:
            raise ValueError(f"option {o.number} value longer than {MAX_OPTION_LENGTH} bytes")
        if o.number - previous > MAX_OPTION_LENGTH:
            raise ValueError(f"option number {o.number} out of range")
        dnib, dext = _nibble(o.number - previous)
        lnib, lext = _nibble(len(o.value))
        parts += (bytes(((dnib << 4) | lnib,)), dext, lext, o.value)
        previous = o.number
    if message.payload:
        parts += (b"\xff", message.payload)
    return b"".join(parts)


# --- decoding -------------------------------------------------------------------


def decode(datagram: bytes) -> Message:
    """
    The message in C{datagram}.

    @raise CoAPFormatError: if the datagram is not a well-formed message;
        its C{action} and L{CoAPFormatError.reset} say how to answer.
    """
    if len(datagram) < 4:
        raise CoAPFormatError("datagram shorter than the 4-byte header", Action.IGNORE, None)
    first, code = datagram[0], datagram[1]
    message_id = int.from_bytes(datagram[2:4], "big")
    if first >> 6 != VERSION:
        # Section 3: "Messages with unknown version numbers MUST be silently ignored."
        raise CoAPFormatError(f"unknown version {first >> 6}", Action.IGNORE, message_id)
    mtype = MessageType((first >> 4) & 0x3)
    action = Action.RESET if mtype is MessageType.CON else Action.IGNORE

    def fail(detail: str) -> CoAPFormatError:
        return CoAPFormatError(detail, action, message_id)

    tkl = first & 0x0F
    if code == Code.EMPTY:
        # Section 4.1: anything after the message ID is a format error.
        if tkl or len(datagram) > 4:
            raise fail("empty message with bytes after the message ID")
        return Message(mtype, Code.EMPTY, message_id)
    if tkl > 8:
        raise fail(f"reserved token length {tkl}")
    end = len(datagram)
    pos = 4 + tkl
    if pos > end:
        raise fail("datagram shorter than its token")
    token = bytes(datagram[4:pos])
    options: list[Option] = []
    number = 0
    payload = b""
    while pos < end:
        byte = datagram[pos]
        pos += 1
        if byte == PAYLOAD_MARKER:
            if pos == end:
                # Section 3: a marker followed by a zero-length payload.
                raise fail("payload marker with an empty payload")
            payload = bytes(datagram[pos:])
            break
        delta, length = byte >> 4, byte & 0x0F
        if delta == 15 or length == 15:
            raise fail("reserved option delta or length 15")
        delta, pos = _extended(datagram, pos, delta, fail)
        length, pos = _extended(datagram, pos, length, fail)
        number += delta
        if pos + length > end:
            raise fail(f"option {number} value runs past the end of the datagram")
        options.append(Option(number, bytes(datagram[pos : pos + length])))
        pos += length
    return Message(mtype, code, message_id, token, tuple(options), payload)


def _extended(
    data: bytes, pos: int, nibble: int, fail: Callable[[str], CoAPFormatError]
) -> tuple[int, int]:
    if nibble < 13:
        return nibble, pos
    size = 1 if nibble == 13 else 2
    if pos + size > len(data):
        raise fail("option header runs past the end of the datagram")
    value = int.from_bytes(data[pos : pos + size], "big")
    return value + (13 if nibble == 13 else 269), pos + size
