"""The CPU/GPU baseline: decode timing, model choice, the bench provider and the GPU script
(run here on the CPU, with a simulated hwmon power sensor as its meter)."""

import json
import re

import pytest
import torch

from tern_fpga.contracts.errors import TernError
from tern_fpga.explore import baselines
from tern_fpga.explore.baselines import (
    decode_rates,
    load_baseline_model,
    measure_golden,
    measure_torch,
)
from tern_fpga.explore.bench import load_figures
from tern_fpga.quant.checkpoint import save_pretrained
from tern_fpga.quant.presets import PRESETS, get_preset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_decode_rates_sizes_runs_from_the_warm_up():
    calls, syncs = [], []

    def step(token):
        calls.append(token)
        return (token * 31 + 7) % 256  # a deterministic "next token"

    rates = decode_rates(step, 5, runs=3, seconds_per_run=0.001, warmup_tokens=6,
                         sync=lambda: syncs.append(len(calls)))
    assert len(rates) == 3 and all(rate > 0 for rate in rates)
    per_run = (len(calls) - 12) // 3
    assert per_run >= 4 and len(calls) == 12 + 3 * per_run  # warm-up, calibration, runs
    assert syncs == [6, 12] + [12 + per_run * (i + 1) for i in range(3)]
    expected = 5
    for token in calls:  # each step was fed the previous step's output
        assert token == expected
        expected = (expected * 31 + 7) % 256


def test_load_baseline_model(tmp_path, monkeypatch):
    monkeypatch.setattr(baselines, "REPOSITORY", tmp_path)
    model, note = load_baseline_model(None, "tiny")
    assert model.config.hidden_size == get_preset("tiny").config().hidden_size
    assert note.startswith("random weights of the tiny preset's shape (no checkpoint in "
                           "checkpoints/tiny yet")
    torch.manual_seed(4)
    model.model.embeddings.weight.data.normal_()
    save_pretrained(model, tmp_path / "checkpoints" / "tiny")
    loaded, note = load_baseline_model(None, "tiny")
    assert note == "trained checkpoint checkpoints/tiny"
    assert torch.equal(loaded.model.embeddings.weight, model.model.embeddings.weight)
    _, note = load_baseline_model(tmp_path / "elsewhere" / "micro", "demo")
    assert "random weights of the micro preset's shape" in note
    names = re.escape(", ".join(sorted(PRESETS)))
    with pytest.raises(TernError, match=r"checkpoint folder .*mine has no config.json; pass a "
                                        rf"trained checkpoint, or a preset name \({names}\) "
                                        r"alone"):
        load_baseline_model(tmp_path / "mine", "demo")


def test_measure_torch_and_golden():
    model, note = load_baseline_model(None, "micro")
    figures = measure_torch(model, note, "cpu", "cpu_baseline.micro.test", runs=2,
                            seconds_per_run=0.05, warmup_tokens=2)
    assert [figure.name for figure in figures] == ["cpu_baseline.micro.test.tokens_per_s"]
    assert figures[0].label == "measured" and figures[0].value > 0
    assert "median of 2 runs" in figures[0].notes and "torch thread" in figures[0].notes
    golden = measure_golden(model, "micro", note, "cpu_baseline.micro.golden", runs=2,
                            seconds_per_run=0.05, warmup_tokens=2)
    assert golden[0].value > 0 and "micro accelerator program" in golden[0].notes


def test_bench_provider_quick(monkeypatch):
    monkeypatch.setattr(baselines, "MEASURED_PRESETS", ("micro",))
    monkeypatch.setattr(baselines, "QUICK_SETTINGS", (2, 0.05, 2))
    threads = torch.get_num_threads()
    figures = baselines.run(quick=True)
    assert torch.get_num_threads() == threads  # restored
    names = [figure.name for figure in figures]
    expected = ["cpu_baseline.micro.pytorch_1thread.tokens_per_s"]
    if threads > 1:
        expected.append(f"cpu_baseline.micro.pytorch_{threads}threads.tokens_per_s")
    assert names == expected + ["cpu_baseline.micro.golden.tokens_per_s"]
    assert all(figure.label == "measured" for figure in figures)


def test_gpu_script_on_cpu_with_a_simulated_meter(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(baselines, "IDLE_SETTLE_S", 0.0)
    device = tmp_path / "class" / "hwmon" / "hwmon0"
    device.mkdir(parents=True)
    (device / "name").write_text("ina219\n")
    (device / "power1_input").write_text("3500000\n")
    output = tmp_path / "out" / "cpu.json"
    assert baselines.main([
        "--device", "cpu", "--preset", "tiny", "--runs", "2", "--seconds-per-run", "0.05",
        "--meter", f"hwmon:{device}", "--idle-seconds", "0.1", "--metered-seconds", "0.2",
        "-o", str(output)]) == 0
    figures = {figure.name.removeprefix("cpu_baseline.tiny.pytorch."): figure
               for figure in load_figures(output)}
    assert list(figures) == ["tokens_per_s", "idle_watts", "watts", "joules_per_token",
                             "gross_joules_per_token", "tokens_per_joule"]
    assert figures["idle_watts"].value == pytest.approx(3.5)
    assert figures["watts"].value == pytest.approx(3.5)
    # Constant power: nothing above idle.
    assert figures["joules_per_token"].value == pytest.approx(0.0, abs=1e-9)
    assert figures["tokens_per_joule"].value == pytest.approx(
        1 / figures["gross_joules_per_token"].value)
    assert "hwmon0 ina219 channel 1" in figures["watts"].notes
    assert "cpu_baseline.tiny.pytorch.tokens_per_s:" in capsys.readouterr().out
    assert json.loads(output.read_text())["figures"][0]["unit"] == "tokens/s"


def test_gpu_script_errors(tmp_path, capsys):
    if not torch.cuda.is_available():
        assert baselines.main(["--device", "cuda", "-o", str(tmp_path / "x.json")]) == 1
        assert "--device cuda: this torch has no CUDA device" in capsys.readouterr().err
    assert baselines.main(["--meter", "watt:1", "--preset", "tiny",
                           "-o", str(tmp_path / "x.json")]) == 1
    assert "unknown meter kind 'watt'" in capsys.readouterr().err
