"""The soak benchmark's pieces that run without a virtual board: the token check and the stalls
of the faulty transport (the benchmark itself runs in `make bench`: 10,000 tokens take minutes)."""

import time

import pytest

from tern_fpga.contracts.errors import TernError
from tern_fpga.explore import soak
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


def test_run_turns_a_soak_into_simulated_figures(monkeypatch):
    asked = {}

    def fake_soak(tokens):
        asked["tokens"] = tokens
        return {"preset": "demo", "tokens": tokens, "fault_rate": 1e-4, "stall_rate": 1e-3,
                "faults": {"flip": 4, "drop": 2, "duplicate": 3, "stall": 5},
                "retransmissions": 7, "naks": 2, "timeouts": 5, "damaged_frames": 1,
                "tokens_per_s": 30.0, "clean_tokens_per_s": 40.0}

    monkeypatch.setattr(soak, "soak", fake_soak)
    figures = {figure.name: figure for figure in soak.run(quick=True)}
    assert asked["tokens"] == soak.QUICK_TOKENS
    assert {figure.label for figure in figures.values()} == {"simulated"}
    assert figures["soak.demo.tokens_equal_to_golden"].value == soak.QUICK_TOKENS
    assert figures["soak.demo.bytes_damaged"].value == 9
    assert figures["soak.demo.bytes_damaged"].notes.startswith("4 flipped, 2 dropped, 3 dup")
    assert figures["soak.demo.stalls"].value == 5
    assert figures["soak.demo.retransmissions"].notes.startswith("2 NAKs, 5 timeouts, 1 damaged")
    assert figures["soak.demo.throughput_lost"].value == pytest.approx(25.0)
    assert "the first 300 tokens over the same board without faults" in \
        figures["soak.demo.tokens_per_s_clean"].notes
