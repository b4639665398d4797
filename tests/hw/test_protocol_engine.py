# amaranth: UnusedElaboratable=no
"""The protocol engine under a cocotb fuzz test on Verilator (see cocotb_protocol_engine.py),
and its constructor checks."""

import functools

import pytest

from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.protocol_engine import ProtocolEngine
from tern_fpga.sim.rtl.cocotb_support import build_component
from tern_fpga.sim.rtl.runs import ENGINE_OPTIONS, engine_parameters

# Tiny spaces, so that random addresses often land on their edges (`tern sim protocol-engine`
# runs the same build).
FUZZ_PARAMS = engine_parameters(PRESETS["micro"])
CONFIG = ENGINE_OPTIONS


@functools.cache
def engine_build():
    engine = ProtocolEngine(
        FUZZ_PARAMS, build_id=CONFIG["build_id"], board_id=CONFIG["board_id"],
        frame_timeout_cycles=CONFIG["frame_timeout_cycles"],
        token_history=CONFIG["token_history"])
    return build_component(engine, "protocol_engine", f"{FUZZ_PARAMS.hash:016x}")


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz(seed):
    engine_build().run("tern_fpga.sim.rtl.testbenches.protocol_engine", {
        **CONFIG, "params": FUZZ_PARAMS.to_dict(), "seed": seed, "frames": 150,
    })


def test_init_wrong_arguments():
    with pytest.raises(TypeError, match="params must be an AcceleratorParameters, not 'demo'"):
        ProtocolEngine("demo")
    with pytest.raises(ValueError, match="token_history must be a power of two from 2 to 32768, "
                                         "not 100"):
        ProtocolEngine(FUZZ_PARAMS, token_history=100)
    with pytest.raises(ValueError, match="build_id must be an integer of 32 bits, not -1"):
        ProtocolEngine(FUZZ_PARAMS, build_id=-1)
    with pytest.raises(ValueError, match="frame_timeout_cycles must be a positive integer, "
                                         "not 0"):
        ProtocolEngine(FUZZ_PARAMS, frame_timeout_cycles=0)
