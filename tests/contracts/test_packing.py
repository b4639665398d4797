"""Ternary weight packings: round trips, the exact codes, and refusal of invalid data."""

import re

import numpy as np
import pytest

from tern_fpga.contracts.packing import (
    codes_to_trits,
    pack_2bit,
    pack_base3,
    trits_to_codes,
    unpack_2bit,
    unpack_base3,
)

LENGTHS = [0, 1, 3, 4, 5, 6, 9, 10, 11, 999, 1000, 1001, 4097]


@pytest.mark.parametrize("count", LENGTHS)
@pytest.mark.parametrize("pack, unpack, per_byte", [(pack_2bit, unpack_2bit, 4),
                                                    (pack_base3, unpack_base3, 5)])
def test_round_trip(count, pack, unpack, per_byte):
    rng = np.random.default_rng(count)
    trits = rng.integers(-1, 2, count)
    data = pack(trits)
    assert data.dtype == np.uint8 and data.size == -(-count // per_byte)
    back = unpack(data, count)
    assert back.dtype == np.int8
    np.testing.assert_array_equal(back, trits)


def test_base3_code():
    rng = np.random.default_rng(5)
    trits = rng.integers(-1, 2, (200, 5))
    expected = ((trits + 1) * 3 ** np.arange(5)).sum(axis=1)
    np.testing.assert_array_equal(pack_base3(trits.reshape(-1)), expected)
    assert pack_base3([-1] * 5).tolist() == [0] and pack_base3([1] * 5).tolist() == [242]
    # Padding is zero weights: digit 1.
    assert pack_base3([1]).tolist() == [2 + 3 + 9 + 27 + 81]


def test_base3_every_byte():
    data = np.arange(243, dtype=np.uint8)
    trits = unpack_base3(data, 5 * 243).reshape(243, 5)
    np.testing.assert_array_equal(((trits + 1) * 3 ** np.arange(5)).sum(axis=1), data)
    np.testing.assert_array_equal(pack_base3(trits.reshape(-1)), data)


def test_2bit_code():
    assert pack_2bit([0, 1, -1, 0, -1]).tolist() == [0b00_11_01_00, 0b11]
    rng = np.random.default_rng(6)
    trits = rng.integers(-1, 2, 64)
    codes = trits_to_codes(trits)
    assert set(codes.tolist()) == {0, 1, 3}
    np.testing.assert_array_equal(codes_to_trits(codes), trits)
    words = pack_2bit(trits).view("<u8")
    for index, trit in enumerate(trits):
        assert (int(words[index // 32]) >> (2 * (index % 32))) & 3 == {0: 0, 1: 1, -1: 3}[trit]


@pytest.mark.parametrize("trits, message", [
    ([0, 2, 1], "trit 1 is 2; a ternary weight must be -1, 0 or +1"),
    ([-3], "trit 0 is -3"),
    ([0.0, 1.0], "not dtype float64"),
    ([[0, 1]], "1-D array"),
])
@pytest.mark.parametrize("pack", [pack_2bit, pack_base3])
def test_pack_refuses(trits, message, pack):
    with pytest.raises(ValueError, match=re.escape(message)):
        pack(np.array(trits))


@pytest.mark.parametrize("unpack, data, count, message", [
    (unpack_2bit, [0b00_10_00_00], 4, r"byte 0 is 0x20, which holds the invalid code 10"),
    (unpack_2bit, [0, 0b01_00_00_00], 7, r"pads 7 weights with non-zero weights"),
    (unpack_2bit, [0, 0], 9, r"9 weights in 2-bit take 3 bytes \(4 per byte\), but 2 bytes"),
    (unpack_base3, [7, 243], 10, r"base-3 byte 1 is 243; .* must be below 243"),
    (unpack_base3, [121, 0], 6, r"pads 6 weights with non-zero weights"),
    (unpack_base3, [121, 121], 6, None),
    (unpack_base3, [1], 6, r"6 weights in base-3 take 2 bytes"),
])
def test_unpack_refuses(unpack, data, count, message):
    data = np.array(data, dtype=np.uint8)
    if message is None:
        assert unpack(data, count).size == count
    else:
        with pytest.raises(ValueError, match=message):
            unpack(data, count)


def test_unpack_refuses_wrong_dtype():
    with pytest.raises(ValueError, match="must be a 1-D uint8 array, not int32"):
        unpack_base3(np.zeros(2, np.int32), 10)


def test_base3_decoder_every_byte():
    from amaranth.sim import Simulator

    from tern_fpga.hw.base3_decoder import Base3Decoder
    from tern_fpga.sim.golden.base3 import decode_base3_bytes

    dut = Base3Decoder()
    outputs = []

    async def testbench(ctx):
        # Every byte, in a shuffled order so that each output is driven from a varied state.
        for byte in np.random.default_rng(8).permutation(256):
            ctx.set(dut.byte, int(byte))
            outputs.append((int(byte), ctx.get(dut.codes.as_value()), ctx.get(dut.invalid)))

    simulator = Simulator(dut)
    simulator.add_testbench(testbench)
    simulator.run()
    outputs.sort()
    words = np.array([word for _, word, _ in outputs])
    codes = (words[:, None] >> (2 * np.arange(5))) & 3
    expected_codes, expected_invalid = decode_base3_bytes(np.arange(256, dtype=np.uint8))
    np.testing.assert_array_equal(codes, expected_codes)
    np.testing.assert_array_equal([invalid for _, _, invalid in outputs], expected_invalid)
    # As a 10-bit value, the codes are the 2-bit packing of the byte's five weights.
    trits = unpack_base3(np.arange(243, dtype=np.uint8), 5 * 243).reshape(243, 5)
    packed = [int.from_bytes(pack_2bit(row).tobytes(), "little") for row in trits]
    np.testing.assert_array_equal(words[:243], packed)
