"""The soak benchmark's pieces that run without a virtual board: the token check and the stalls
of the faulty transport (the benchmark itself runs in `make bench`: 10,000 tokens take minutes)."""

import time

import pytest

from tern_fpga.contracts.errors import TernError
from tern_fpga.explore.soak import _check
from tern_fpga.host.transport import FaultyTransport


def test_check_names_the_first_differing_or_missing_token():
    _check([1, 2, 3], [1, 2, 3], "clean link")
    with pytest.raises(TernError, match=r"soak \(faulty link\): token 1 is 9, the golden model's "
                                        r"2; the link let a damaged or lost token through"):
        _check([1, 9, 3], [1, 2, 3], "faulty link")
    with pytest.raises(TernError, match="token 2 is nothing, the golden model's 3"):
        _check([1, 2], [1, 2, 3], "faulty link")


class Loopback:
    def __init__(self):
        self.sent = b""

    def write(self, data):
        self.sent += data

    def read(self, timeout):
        return b"\x55" * 100

    def close(self):
        pass


def test_faulty_transport_stalls_at_its_rate():
    faulty = FaultyTransport(Loopback(), stall=0.3, stall_seconds=0.01, seed=4)
    start = time.perf_counter()
    for _ in range(200):
        faulty.write(b"abc")
        assert faulty.read(0) == b"\x55" * 100      # no byte damaged: only stalls asked for
    seconds = time.perf_counter() - start
    assert 90 <= faulty.faults["stall"] <= 150      # 400 transfers at 0.3
    assert seconds >= 0.01 * faulty.faults["stall"]
    assert faulty.inner.sent == b"abc" * 200
    with pytest.raises(ValueError, match="stall rate must be in \\[0, 1\\), not 1.5"):
        FaultyTransport(Loopback(), stall=1.5)
