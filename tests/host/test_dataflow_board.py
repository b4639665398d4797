"""The dataflow core (issue 15) on the virtual board (hw/dataflow/accelerator.py: the host link
and the core, Verilator; the design of the ULX3S's micro-dataflow bitstream but for its
multipliers' form), driven by the host's own driver over the simulated UART: the committed micro
checkpoint exported for the ``micro-dataflow`` preset, rewritten into the core's segmented
layout, loaded through the UART and run for 64 tokens, every token and, after the run, the whole
vector memory (the recurrent state, the buffers, the last step's logits) equal to the golden
model's; ``tern generate --port sim`` on that export picks the dataflow core by itself and prints
the golden model's tokens; the core on a serial port without a bitstream is refused."""

import shutil

import numpy as np
import pytest

from tern_fpga.commands.cli import main as tern_main
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.export_format import read_export
from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.paths import CHECKPOINTS
from tern_fpga.contracts.protocol import MemorySpace
from tern_fpga.contracts.segmented_layout import segmented_export
from tern_fpga.host import session
from tern_fpga.quant.export import export_checkpoint
from tern_fpga.sim.golden.model import golden_from_export

PARAMS = PRESETS["micro-dataflow"]
pytestmark = [pytest.mark.skipif(shutil.which("verilator") is None, reason="needs verilator"),
              pytest.mark.xdist_group("dataflow_board")]


@pytest.fixture(scope="module")
def micro_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("dataflow") / "micro-dataflow.tern"
    export_checkpoint(CHECKPOINTS / "micro", PARAMS, path)
    return path


def test_the_micro_model_generates_64_tokens_bit_exact_on_the_dataflow_core(micro_export):
    export = read_export(micro_export)
    prompt, count = list(b"The "), 64
    golden = golden_from_export(export)
    expected = golden.generate(prompt, count)
    segmented = session.export_for_core(export, session.resolve_core(PARAMS))
    assert segmented.sections["weights"].tobytes() == segmented_export(export).sections[
        "weights"].tobytes()
    with session.connect("sim", PARAMS) as (board, virtual):
        session.load(board, segmented, progress=False)
        report = session.generate_text(board, segmented, prompt, count, show=False)
        memory = board.read_memory(MemorySpace.VECTOR, 0, PARAMS.vector_memory_words)
    assert report.generated == expected
    differing = np.flatnonzero(memory.astype(np.int32) != golden.memory.astype(np.int32))
    assert differing.size == 0, (f"{differing.size} vector elements differ after the run, the "
                                 f"first at {differing[0]}")
    assert not virtual.messages, virtual.messages[:5]
    print(f"micro on the dataflow core: {report.cycles_per_token:,.0f} cycles a token "
          f"(simulated, the chip's counter)")


def test_tern_generate_runs_the_dataflow_core(micro_export, capsys):
    export = read_export(micro_export)
    expected = golden_from_export(export).generate(list(b"Once "), 12)
    code = tern_main(["generate", str(micro_export), "--port", "sim",
                      "--prompt", "Once ", "-n", "12"])
    out = capsys.readouterr().out
    assert code == 0
    assert bytes(expected).decode("utf-8", "replace") in out, (expected, out)


def test_the_dataflow_core_is_refused_where_it_cannot_run():
    with pytest.raises(TernError, match="no bitstream of the dataflow core exists for preset "
                                        "'micro'.*micro-dataflow"), \
            session.connect("/dev/ttyUSB9", PRESETS["micro"], core="dataflow"):
        pass
    with pytest.raises(TernError, match="'micro-dataflow' is built with the dataflow core"), \
            session.connect("sim", PARAMS, core="instruction"):
        pass
    with pytest.raises(TernError, match="no DRAM backend yet"), \
            session.connect("sim", PRESETS["stdlib"], core="dataflow"):
        pass
    with pytest.raises(TernError, match="no core 'systolic'"), \
            session.connect("sim", PARAMS, core="systolic"):
        pass
