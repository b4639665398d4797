"""`tern generate --meter` end to end: the virtual board (the host link and the stand-in core in
Verilator) generates while a simulated hwmon INA219 (a sysfs folder whose ``power1_input`` reads
1 W idle and 2 W while the board generates) is sampled in the background; the report gives the
mean watts of the run and the idle-subtracted joules per token."""

import time

import pytest

import tern_fpga.host.session
from tern_fpga.commands.cli import main as tern_main
from tern_fpga.contracts.export_format import write_export

from support.link import random_export


@pytest.mark.xdist_group("virtual-board")
def test_generate_with_a_simulated_hwmon_meter(virtual_board, tmp_path, capsys, monkeypatch):
    device = tmp_path / "class" / "hwmon" / "hwmon4"
    device.mkdir(parents=True)
    (device / "name").write_text("ina219\n")
    power = device / "power1_input"
    power.write_text("1000000\n")                      # microwatts: 1 W idle

    original = tern_fpga.host.session.generate_text

    def generate_at_two_watts(*args, **kwargs):
        power.write_text("2000000\n")
        time.sleep(0.5)  # a run long enough for the sampler (the stand-in core is fast)
        return original(*args, **kwargs)

    monkeypatch.setattr(tern_fpga.host.session, "generate_text", generate_at_two_watts)
    export_path = tmp_path / "model.tern"
    write_export(export_path, random_export(21))
    code = tern_main(["generate", str(export_path), "--port", virtual_board, "--ids", "1,2,3",
                      "-n", "60", "--meter", f"hwmon:{device}"])
    output = capsys.readouterr().out
    assert code == 0
    line = next(line for line in output.splitlines() if line.startswith("power measured by"))
    watts = float(line.split(": ")[1].split(" W mean")[0])
    joules_per_token = float(line.split(", ")[1].split(" J per token")[0])
    assert 1.7 <= watts <= 2.0       # 2 W while generating (a first sample may still read 1 W)
    assert joules_per_token > 0      # the 1 W idle baseline subtracted from the run
    assert "tokens/s" in output
