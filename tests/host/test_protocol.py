"""The protocol reference: CRC vectors, framing round trips, resynchronisation, space sizes."""

import random
import zlib

import numpy as np
import pytest

from tern_fpga.contracts.params import PRESETS, AcceleratorParameters
from tern_fpga.contracts.protocol import (
    ESCAPE,
    FLAG,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    MemorySpace,
    crc16,
    crc32_words,
    encode_frame,
    space_words,
    to_words,
)
from tern_fpga.host.link import Link
from tern_fpga.hw.core_interface import address_bits


def test_crc16_check_values():
    # CRC-16/CCITT-FALSE catalogue check value, and the residue of a frame with its CRC.
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    body = bytes(range(40))
    assert crc16(body + crc16(body).to_bytes(2, "big")) == 0


def test_crc32_words_is_zlib_of_little_endian_bytes():
    words = np.random.default_rng(3).integers(0, 1 << 32, 77, dtype=np.uint32)
    assert crc32_words(words) == zlib.crc32(words.astype("<u4").tobytes())
    assert crc32_words([0x04030201]) == zlib.crc32(bytes([1, 2, 3, 4]))


def test_frame_bytes_by_hand():
    # FLAG, length 2 (LE), seq, code, payload with both special bytes escaped, CRC MSB first.
    frame = encode_frame(9, 0x02, bytes([FLAG, ESCAPE]))
    assert frame[:9] == bytes([FLAG, 2, 0, 9, 0x02, ESCAPE, 0x5E, ESCAPE, 0x5D])
    crc = crc16(bytes([2, 0, 9, 0x02, FLAG, ESCAPE])).to_bytes(2, "big")
    stuffed = b"".join(bytes([ESCAPE, b ^ 0x20]) if b in (FLAG, ESCAPE) else bytes([b])
                       for b in crc)
    assert frame[9:] == stuffed


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_random_frames(seed):
    rng = random.Random(seed)
    frames = []
    for _ in range(20):
        length = rng.choice([0, 1, 2, rng.randrange(MAX_PAYLOAD + 1), MAX_PAYLOAD])
        # Plenty of FLAG and ESCAPE bytes in the payload.
        payload = bytes(rng.choice([FLAG, ESCAPE, rng.randrange(256)]) for _ in range(length))
        frames.append(Frame(rng.randrange(256), rng.randrange(256), payload))
    stream = b"".join(encode_frame(f.seq, f.code, f.payload) for f in frames)
    assert stream.count(FLAG) == len(frames)     # a FLAG only ever starts a frame
    decoder = FrameDecoder()
    # Fed in random pieces: the decoder keeps its state across calls.
    decoded, position = [], 0
    while position < len(stream):
        step = rng.randrange(1, 300)
        decoded += decoder.feed(stream[position:position + step])
        position += step
    assert decoded == frames
    assert decoder.crc_errors == decoder.frame_errors == 0


def test_decoder_resynchronises_after_garbage_and_damage():
    rng = random.Random(11)
    good = [Frame(i, 0x81, bytes(rng.randrange(256) for _ in range(30))) for i in range(4)]
    damaged = bytearray(encode_frame(99, 0x81, b"hello, board"))
    damaged[7] ^= 0x04
    cut = encode_frame(98, 0x81, bytes(50))[:20]
    garbage = bytes(rng.randrange(256) for _ in range(200)).replace(bytes([FLAG]), b"")
    stream = (garbage + encode_frame(good[0].seq, good[0].code, good[0].payload) + bytes(damaged)
              + encode_frame(good[1].seq, good[1].code, good[1].payload) + cut
              + encode_frame(good[2].seq, good[2].code, good[2].payload)
              + bytes([FLAG, 0xFF, 0xFF])   # a length above MAX_PAYLOAD
              + encode_frame(good[3].seq, good[3].code, good[3].payload))
    decoder = FrameDecoder()
    assert decoder.feed(stream) == good
    assert decoder.crc_errors == 1
    assert decoder.frame_errors == 2     # the cut frame and the oversized length


def test_encode_frame_refuses_bad_fields():
    with pytest.raises(ValueError, match="at most 1036 bytes, not 1037"):
        encode_frame(0, 1, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(ValueError, match="seq=256"):
        encode_frame(256, 1)


def test_sequence_numbers_wrap():
    link = Link(transport=None, timeout=1.0)
    link._seq = 253
    assert [link.next_seq() for _ in range(5)] == [254, 255, 0, 1, 2]
    assert link.seq == 2


def test_space_words():
    params = AcceleratorParameters(
        name="spaces", ternary_lanes=128, vector_lanes=8, weight_memory_words=9 * 1024,
        vector_memory_words=12 * 1024, embedding_memory_words=256 * 128, program_words=1024)
    sizes = space_words(params)
    assert sizes[MemorySpace.PROGRAM] == 4 * 1024              # 128-bit instructions
    assert sizes[MemorySpace.WEIGHTS] == 9 * 1024 * 128 * 2 // 32
    assert sizes[MemorySpace.VECTOR] == 12 * 1024
    assert sizes[MemorySpace.EMBEDDING] == 256 * 128 // 2      # int16 pairs
    assert sizes[MemorySpace.CONSTANTS] == 2 * 1024            # int64
    assert sizes[MemorySpace.TABLES] == 512 + 64               # sigmoid at 0, rsqrt at 2 << 8
    # P = 8: two 16-bit weight words share a 32-bit word.
    small = params.replace(ternary_lanes=8, weight_memory_words=5)
    assert space_words(small)[MemorySpace.WEIGHTS] == 3
    # Every preset fits the core interface's addresses.
    for preset in PRESETS.values():
        assert max(space_words(preset).values()) <= 1 << address_bits(preset)


def test_to_words_packs_little_endian():
    assert to_words(np.array([1, -2, 3], dtype=np.int16)).tolist() == [0xFFFE0001, 3]
    assert to_words(np.array([-1 << 40 | 5], dtype=np.int64)).tolist() == [5, 0xFFFFFF00]
    assert to_words(np.arange(1, 6, dtype=np.uint8)).tolist() == [0x04030201, 5]
