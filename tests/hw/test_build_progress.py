"""tern build's progress lines, read from the toolchain's logs as a build goes."""

import time

from tern_fpga.commands.build import _ProgressPrinter, build_phase


def test_phases_follow_the_logs(tmp_path):
    assert build_phase(tmp_path) is None
    (tmp_path / "top.rpt").write_text("-- Running command `synth_ecp5` --\n")
    assert build_phase(tmp_path) == "Yosys: synthesis"
    log = tmp_path / "top.tim"
    log.write_text("Info: Packing IOs..\n")
    assert build_phase(tmp_path) == "nextpnr: packing"
    log.write_text(log.read_text() + "Info: Running Static placer...\n")
    assert build_phase(tmp_path) == "nextpnr: placing"
    log.write_text(log.read_text() + "Info: Running simulated annealing placer for refinement.\n")
    assert build_phase(tmp_path) == "nextpnr: refining the placement"
    log.write_text(log.read_text() + "Info: Running main router loop...\n")
    assert build_phase(tmp_path) == "nextpnr: routing"
    log.write_text(log.read_text()
                   + "Info:     iter=1 wires=407899 overused=34479 overuse=45247 archfail=NA\n"
                   + "Info:     iter=2 wires=422395 overused=23619 overuse=26334 archfail=NA\n")
    assert build_phase(tmp_path) == \
        "nextpnr: routing, iteration 2: 23,619 wires overused (0 is done)"
    log.write_text(log.read_text() + "Info: Running router1 to check that route is legal...\n")
    assert build_phase(tmp_path) == "nextpnr: checking the routes"


def test_a_stalled_router_gets_a_hint_to_try_another_seed(tmp_path):
    from tern_fpga.commands.build import STALLED_ITERATIONS

    def log(overused):
        return "Info: Running main router loop...\n" + "".join(
            f"Info:     iter={number} wires=700000 overused={count} overuse=1\n"
            for number, count in enumerate(overused, 1))

    (tmp_path / "top.tim").write_text(log([50_000, 3_000, 1_287] + [1_300] * STALLED_ITERATIONS))
    phase = build_phase(tmp_path)
    assert phase.endswith("; no new low since iteration 3 (1,287): the router may never "
                          "finish. Stop it and try another placement (tern build --seed N)")
    # a converging run's long tail on its last few wires is no stall
    (tmp_path / "top.tim").write_text(log([50_000, 300, 1] + [1] * 30))
    assert build_phase(tmp_path) == \
        "nextpnr: routing, iteration 33: 1 wires overused (0 is done)"
    (tmp_path / "top.tim").write_text(log([50_000, 3_000, 1_287] + [1_300] * 14))
    assert "no new low" not in build_phase(tmp_path)


def test_the_printer_prints_each_phase_once(tmp_path, capsys):
    printer = _ProgressPrinter(tmp_path, interval=0.01)
    printer.start()
    (tmp_path / "top.rpt").write_text("")
    time.sleep(0.2)
    (tmp_path / "top.tim").write_text("Info: Running main analytical placer\n")
    time.sleep(0.2)
    printer.stopped.set()
    printer.join()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("] ")[1] for line in lines] == ["Yosys: synthesis", "nextpnr: placing"]
    assert all(line.startswith("  [  0:00]") for line in lines)


def test_a_preset_that_does_not_fit_is_refused_before_synthesis(monkeypatch):
    import pytest

    from tern_fpga.commands import build as build_command
    from tern_fpga.contracts.errors import TernError
    from tern_fpga.explore import synthesis_cache

    mapped = []

    def fake_mapping(params, family):
        mapped.append((params.name, family))
        return {"bram": 329 if family == "ice40" else 84, "dsp": 32, "ff": 0, "cells": {}}

    monkeypatch.setattr(synthesis_cache, "map_memories", fake_mapping)
    with pytest.raises(TernError, match=r"the micro preset does not fit the iCEBreaker, "
                                        r"iCE40UP5K: it needs bram 329/30, dsp 32/8 .*nothing "
                                        r"was built"):
        build_command.check_fit("icebreaker", "micro", progress=lambda line: None)
    build_command.check_fit("ulx3s-85f", "micro", progress=lambda line: None)  # fits: silent
    assert mapped == [("micro", "ice40"), ("micro", "ecp5")]


def test_the_seed_reaches_nextpnr_and_a_bad_one_is_refused_at_once(monkeypatch):
    import argparse

    import pytest

    from tern_fpga.commands import build as build_command
    from tern_fpga.contracts.errors import TernError
    from tern_fpga.hw import build

    assert build.nextpnr_options(7).startswith("--seed 7 ")
    assert build.nextpnr_options().startswith(f"--seed {build.NEXTPNR_SEED} ")
    checked = []
    monkeypatch.setattr(build_command, "check_fit", lambda *args: checked.append(args))
    arguments = argparse.Namespace(board="ulx3s-85f", preset="micro", seed=0,
                                   skip_fit_check=False, baud=None, output_dir="unused",
                                   force=False)
    with pytest.raises(TernError, match="the nextpnr seed must be an integer from 1 to "
                                        "2\\*\\*31 - 1, not 0"):
        build_command.run(arguments)
    assert checked == []    # refused before the half-minute fit check
