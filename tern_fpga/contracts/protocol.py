"""The host link's wire protocol: frames, CRCs, commands and memory spaces (pure Python).

This module is the reference that both ends follow: the host library (:mod:`tern_fpga.host.link`,
:mod:`tern_fpga.host.driver`) builds and parses frames with it, the on-chip engine
(:mod:`tern_fpga.hw.protocol_engine`) takes its constants from it, and the engine's tests compare
the circuit's bytes with :func:`encode_frame` and :class:`FrameDecoder`. ``docs/host-protocol.md``
describes the same bytes for a reader in another language.

A frame on the wire::

    FLAG | stuffed( LENGTH u16 | SEQ u8 | CODE u8 | PAYLOAD (LENGTH bytes) | CRC u16 )

``FLAG`` (0x7E) only ever appears as a frame start: inside a frame, 0x7E and 0x7D are sent as
0x7D followed by the byte XOR 0x20. ``LENGTH`` is little-endian, ``CRC`` is CRC-16/CCITT-FALSE
(polynomial 0x1021, initial 0xFFFF, not reflected) of the unstuffed ``LENGTH .. PAYLOAD`` bytes,
sent most significant byte first, so that the CRC of a whole good frame is 0.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import zlib

import numpy as np

__all__ = [
    "ABORT_REPLY",
    "COMMAND_LIMIT",
    "DUPLICATE",
    "ESCAPE",
    "FLAG",
    "MAX_FEED_TOKENS",
    "MAX_PAYLOAD",
    "MAX_READ_WORDS",
    "MAX_TOKENS_PER_REPLY",
    "MAX_WRITE_WORDS",
    "MEMORY_HEADER",
    "PROTOCOL_VERSION",
    "RESPONSE",
    "Code",
    "Frame",
    "FrameDecoder",
    "MemorySpace",
    "NakReason",
    "RunMode",
    "Status",
    "crc16",
    "crc32_words",
    "encode_frame",
    "space_words",
    "table_offsets",
    "to_words",
]

# 2: ABORT (0x08) ends a run at the next token boundary.
PROTOCOL_VERSION = 2
FLAG = 0x7E
ESCAPE = 0x7D
ESCAPE_XOR = 0x20

# Memory commands start with three little-endian uint32: space, address, count.
MEMORY_HEADER = struct.Struct("<III")
MAX_WRITE_WORDS = 256
MAX_READ_WORDS = 256
MAX_PAYLOAD = MEMORY_HEADER.size + 4 * MAX_WRITE_WORDS  # 1036 bytes
# RUN: entry u32, token u16, count u16, mode u8 + 3 reserved bytes, then feed tokens (u16 each).
RUN_HEADER = struct.Struct("<IHHB3x")
MAX_FEED_TOKENS = 256
MAX_TOKENS_PER_REPLY = 256
TOKENS_REQUEST = struct.Struct("<HH")      # start index, most tokens wanted
TOKENS_REPLY = struct.Struct("<BBH")       # status, running, produced (then u16 tokens)
ABORT_REPLY = struct.Struct("<BBH")        # status, running (a run is stopping), produced
TOKEN_NOTIFICATION = struct.Struct("<HH")  # index within the run, token
IDENTIFY_REPLY = struct.Struct("<BBHIQHHI")
STATUS_REPLY = struct.Struct("<BBHQIIIIIIIQ")
CRC_REPLY = struct.Struct("<BI")
COMMAND_LIMIT = 0x40
RESPONSE = 0x80     # a reply's code is the command's code with this bit set
DUPLICATE = 0x80    # set in a reply's status byte: a repeated frame, not executed again


class Code(enum.IntEnum):
    """Frame codes. Commands are below :data:`COMMAND_LIMIT` (0x40); a reply's code is its
    command's with :data:`RESPONSE` (0x80) set; frames that the board starts itself are 0xC0 and
    up. The board ignores a frame from the host with a code of 0x40 or more (a frame error)."""

    IDENTIFY = 0x01
    WRITE = 0x02
    READ = 0x03
    CRC = 0x04
    RUN = 0x05
    STATUS = 0x06
    TOKENS = 0x07
    ABORT = 0x08    # end the run at the next token boundary; memories are left as they are
    TOKEN = 0xC0    # board -> host: one token of a run, as it is produced
    NAK = 0xFF      # board -> host: a frame arrived damaged; send it again


class Status(enum.IntEnum):
    """First payload byte of every reply (bit 7 aside, see :data:`DUPLICATE`)."""

    OK = 0
    BAD_COMMAND = 1
    BAD_LENGTH = 2
    BAD_SPACE = 3
    OUT_OF_RANGE = 4
    BUSY = 5
    BAD_ARGUMENT = 6


class NakReason(enum.IntEnum):
    CRC = 1         # the frame's CRC did not match
    TOO_LONG = 2    # the length field is above MAX_PAYLOAD


class RunMode(enum.IntEnum):
    FEED = 0        # step i runs on the i-th given token
    GENERATE = 1    # step 0 runs on the given token, step i on step i-1's output


class MemorySpace(enum.IntEnum):
    """The accelerator's memories as the link addresses them, in 32-bit words."""

    PROGRAM = 0
    WEIGHTS = 1
    VECTOR = 2
    EMBEDDING = 3
    CONSTANTS = 4
    TABLES = 5


# CRCs -------------------------------------------------------------------------------------------


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC16_TABLE = _crc16_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``crc16(b"123456789") == 0x29B1``)."""
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16_TABLE[(crc >> 8) ^ byte]
    return crc


def crc32_words(words) -> int:
    """The CRC that the CRC command computes on chip: CRC-32 (as ``zlib.crc32``) of the words'
    little-endian bytes."""
    return zlib.crc32(to_words(np.asarray(words, dtype=np.uint32)).tobytes())


# Frames -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame with a good CRC: sequence number, code, payload bytes."""

    seq: int
    code: int
    payload: bytes

    @property
    def status(self) -> int:
        """A reply's status, without the duplicate bit."""
        return self.payload[0] & ~DUPLICATE if self.payload else -1


def _stuff(data: bytes) -> bytes:
    return (data.replace(bytes([ESCAPE]), bytes([ESCAPE, ESCAPE ^ ESCAPE_XOR]))
                .replace(bytes([FLAG]), bytes([ESCAPE, FLAG ^ ESCAPE_XOR])))


def encode_frame(seq: int, code: int, payload: bytes = b"") -> bytes:
    """The bytes on the wire for one frame.

    Raises
    ------
    ValueError
        If ``seq`` or ``code`` is not a byte, or the payload is longer than
        :data:`MAX_PAYLOAD`.
    """
    if not (0 <= seq <= 0xFF and 0 <= code <= 0xFF):
        raise ValueError(f"seq and code must be bytes, not seq={seq!r} code={code!r}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a payload holds at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    body = struct.pack("<HBB", len(payload), seq, code) + bytes(payload)
    return bytes([FLAG]) + _stuff(body + crc16(body).to_bytes(2, "big"))


class FrameDecoder:
    """Turns received bytes into frames, resynchronising on every ``FLAG``.

    The same state machine as the engine's receiver. :meth:`feed` returns the frames whose CRC
    matched, in order; damaged frames are counted in :attr:`crc_errors` (and noted in
    :attr:`damaged`, which the link clears), cut or oversized ones in :attr:`frame_errors`.
    """

    def __init__(self):
        self._body: bytearray | None = None    # None: hunting for a FLAG
        self._escaped = False
        self.crc_errors = 0
        self.frame_errors = 0
        self.damaged = 0

    def feed(self, data: bytes) -> list[Frame]:
        frames = []
        for byte in data:
            if byte == FLAG:
                if self._body:
                    self.frame_errors += 1
                self._body, self._escaped = bytearray(), False
            elif self._body is None:
                continue
            elif byte == ESCAPE:
                self._escaped = True
            else:
                self._body.append(byte ^ ESCAPE_XOR if self._escaped else byte)
                self._escaped = False
                frame = self._check()
                if frame is not None:
                    frames.append(frame)
        return frames

    def _check(self) -> Frame | None:
        body = self._body
        if len(body) < 2:
            return None
        length = body[0] | body[1] << 8
        if length > MAX_PAYLOAD:
            self.frame_errors += 1
            self.damaged += 1
            self._body = None
            return None
        if len(body) < length + 6:
            return None
        self._body = None
        if crc16(bytes(body)) != 0:
            self.crc_errors += 1
            self.damaged += 1
            return None
        return Frame(body[2], body[3], bytes(body[4:4 + length]))


# Memory spaces ----------------------------------------------------------------------------------


def table_offsets(params) -> dict[str, int]:
    """Word offsets in :attr:`MemorySpace.TABLES`: the sigmoid table (``2**T + 1`` entries) at 0,
    the rsqrt seed table at ``2**(T + 1)``."""
    return {"sigmoid_table": 0, "rsqrt_table": 2 << params.sigmoid_table_bits}


def space_words(params) -> dict[MemorySpace, int]:
    """Size of each memory space in 32-bit words, for ``params``
    (a :class:`~tern_fpga.contracts.params.AcceleratorParameters`).

    Elements narrower than 32 bits are packed (two int16 embeddings a word; ``P = 8`` weight
    words of 16 bits two a word), wider ones take consecutive words, least significant first
    (a 128-bit instruction four words, an int64 constant two). The constant table has
    ``program_words`` entries, as the compiler allows.
    """
    def words(elements: int, bits: int) -> int:
        stride = 1 << max(bits - 1, 0).bit_length()  # storage width: a power of two
        return -(-elements * stride // 32)

    return {
        MemorySpace.PROGRAM: words(params.program_words, 128),
        MemorySpace.WEIGHTS: words(params.weight_memory_words, params.weight_word_bits),
        MemorySpace.VECTOR: words(params.vector_memory_words, params.vector_bits),
        MemorySpace.EMBEDDING: words(params.embedding_memory_words, params.embedding_bits),
        MemorySpace.CONSTANTS: words(params.program_words, 64),
        MemorySpace.TABLES: table_offsets(params)["rsqrt_table"] + (1 << params.rsqrt_table_bits),
    }


def to_words(array) -> np.ndarray:
    """An array's little-endian bytes (C order) as ``uint32`` words, the last zero-padded."""
    array = np.ascontiguousarray(array)
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    data += bytes(-len(data) % 4)
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)
