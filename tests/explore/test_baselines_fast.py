"""The strongest baselines: the lean decode (same tokens as the model as trained), its CUDA-graph
wrapper run eagerly on the CPU, the CPU provider, and their figures with a simulated meter."""

import types

import pytest
import torch

from tern_fpga.contracts.errors import TernError
from tern_fpga.explore import baselines_cpu, baselines_gpu
from tern_fpga.explore.baselines import load_baseline_model
from tern_fpga.explore.baselines_gpu import GraphDecoder, measure, run_presets, variants
from tern_fpga.explore.baselines_lean import (
    LeanDecoder,
    first_difference,
    reference_tokens,
)
from tern_fpga.host.meters import open_meter

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def micro():
    model, _ = load_baseline_model(None, "micro")
    return model


@pytest.fixture
def meter(tmp_path):
    device = tmp_path / "class" / "hwmon" / "hwmon0"
    device.mkdir(parents=True)
    (device / "name").write_text("ina219\n")
    (device / "power1_input").write_text("2500000\n")
    meter = open_meter(f"hwmon:{device}")
    yield meter
    meter.close()


def test_lean_float32_decode_gives_the_trained_models_tokens(micro):
    reference = reference_tokens(micro, 48)
    assert LeanDecoder(micro).generate(48) == reference
    assert first_difference(reference, reference) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_lean_low_precision_products_decode(micro, dtype):
    decoder = LeanDecoder(micro, dtype)
    assert decoder.head.matrix.dtype == getattr(torch, dtype)
    assert set(decoder.head.matrix.unique().tolist()) <= {-1.0, 0.0, 1.0}  # exact ternary
    tokens = decoder.generate(8)
    assert len(tokens) == 8 and all(0 <= token < micro.config.vocab_size for token in tokens)


def test_lean_step_is_pure_and_batched(micro):
    decoder = LeanDecoder(micro)
    token, state = decoder.prime(batch=2)
    before = state.clone()
    with torch.inference_mode():
        tokens = torch.tensor([token[0], (token[1] + 7) % 256])
        next_tokens, new_state = decoder.step(tokens, state)
        single, _ = decoder.step(tokens[1:], state[:, 1:])
    assert torch.equal(state, before)  # the given state is not modified
    assert new_state.shape == state.shape and next_tokens.shape == (2,)
    assert next_tokens[1] == single[0]  # streams are independent


def test_lean_decoder_rejects_an_unknown_dtype(micro):
    with pytest.raises(TernError, match="matmul dtype 'int4' is not supported; use one of"):
        LeanDecoder(micro, "int4")


@pytest.mark.parametrize("batch", [1, 3])
def test_graph_decoder_replays_the_lean_decode(micro, batch):
    with torch.inference_mode():
        graph = GraphDecoder(LeanDecoder(micro), batch, compiled=False, steps=4)
        assert graph.first_stream_tokens(10) == LeanDecoder(micro).generate(10)
        graph.replay()
        assert graph.output.shape == (4, batch)
        assert not torch.equal(graph.state, graph.start_state)  # it decoded
        graph.reset()
        assert torch.equal(graph.state, graph.start_state)
    if batch > 1:
        assert len(set(graph.start_tokens.tolist())) > 1  # the streams differ


def test_measure_with_a_simulated_meter(micro, meter):
    with torch.inference_mode():
        graph = GraphDecoder(LeanDecoder(micro), 2, compiled=False, steps=2)
        idle = meter.idle_baseline(0.1)
        figures = measure(graph, "gpu_baseline.micro.test", "notes", "this CPU", meter, idle,
                          runs=2, seconds_per_run=0.05, metered_seconds=0.1)
    named = {figure.name.rsplit(".", 1)[1]: figure for figure in figures}
    assert list(named) == ["tokens_per_s", "idle_watts", "watts", "joules_per_token",
                           "gross_joules_per_token", "tokens_per_joule"]
    assert named["watts"].value == pytest.approx(2.5)
    assert named["joules_per_token"].value == pytest.approx(0.0, abs=1e-9)
    assert "2 streams, 2 tokens per stream per graph replay" in named["tokens_per_s"].notes
    assert all(figure.label == "measured" for figure in figures)


def test_variants_and_run_presets_on_the_cpu(monkeypatch):
    assert [name for name, *_ in variants(False)] == [
        "lean_compiled_float32", "lean_graph_float32", "lean_compiled_bfloat16"]
    batches = [batch for *_, batch in variants(True)]
    assert batches[-3:] == [8, 64, 512]
    monkeypatch.setattr(baselines_gpu, "STEPS_PER_GRAPH", 2)
    saved = []
    document = run_presets(["micro"], "none", float("inf"), saved.append, device="cpu",
                           only=("lean_graph_float32",), runs=1, seconds_per_run=0.02)
    names = [figure["name"] for figure in document["figures"]]
    assert names == ["gpu_baseline.micro.lean_graph_float32.tokens_same_as_float32",
                     "gpu_baseline.micro.lean_graph_float32.tokens_per_s"]
    assert document["figures"][0]["value"] == baselines_gpu.TOKENS_CHECKED
    assert document["skipped"] == [] and saved and saved[-1] is document
    late = run_presets(["micro"], "none", 0.0, saved.append, device="cpu",
                       only=("lean_graph_float32",))
    assert late["figures"] == [] and late["skipped"] == [
        "gpu_baseline.micro.lean_graph_float32: out of time"]
    with pytest.raises(TernError, match=r"no variant 'lean_graph_float64'; the variants are "
                                        r"lean_compiled_float32, lean_graph_float32, "):
        run_presets(["micro"], "none", float("inf"), saved.append, device="cpu",
                    only=("lean_graph_float32", "lean_graph_float64"))


def test_cpu_lean_measurement_with_a_meter(micro, meter):
    figures = baselines_cpu.measure_lean_cpu(
        LeanDecoder(micro), "cpu_baseline.micro.lean_1thread", "note", 1, compile_step=False,
        runs=2, seconds_per_run=0.05, warmup_tokens=2, meter=meter, idle_seconds=0.1,
        metered_seconds=0.1, reference=reference_tokens(micro, 8))
    agreement, speed = figures[:2]
    assert agreement.name == "cpu_baseline.micro.lean_1thread.tokens_same_as_float32"
    assert agreement.value == 8
    assert speed.name == "cpu_baseline.micro.lean_1thread.tokens_per_s" and speed.value > 0
    assert speed.notes.startswith("best of 2 runs (median ")
    assert "tokens per second of this process's CPU time" in speed.notes
    assert "eager PyTorch (not compiled)" in speed.notes
    assert figures[-1].name.endswith(".tokens_per_joule") and len(figures) == 7


def test_cpu_compile_failure_falls_back_to_eager(micro, monkeypatch):
    def broken(function, **options):
        def call(*args):
            raise RuntimeError("no C++ compiler found\nmore")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    step, how = baselines_cpu.compiled_step(LeanDecoder(micro))
    assert how == ("eager PyTorch (torch.compile failed here: RuntimeError: no C++ compiler "
                   "found)")
    assert step.__name__ == "step"


def test_cpu_provider_quick(monkeypatch):
    monkeypatch.setattr(baselines_cpu, "MEASURED_PRESETS", ("micro",))
    monkeypatch.setattr(baselines_cpu, "available_cores", lambda: 1)
    monkeypatch.setattr(baselines_cpu, "QUICK_SETTINGS", (2, 0.05, 2, 0.1, 0.1))
    monkeypatch.setattr(baselines_cpu, "compiled_step",
                        lambda decoder, compile_step=True: (decoder.step, "eager (test)"))
    figures = baselines_cpu.run(quick=True)
    assert [figure.name for figure in figures][:2] == [
        "cpu_baseline.micro.lean_1thread.tokens_same_as_float32",
        "cpu_baseline.micro.lean_1thread.tokens_per_s"]


def test_cpu_agreement_names_the_first_difference_without_guessing_its_cause(micro):
    decoder = LeanDecoder(micro)
    reference = reference_tokens(micro, 6)
    reference[3] = (reference[3] + 1) % micro.config.vocab_size
    figure = baselines_cpu._agreement(decoder.step, decoder, reference, "cpu.x", "note", "here")
    assert figure.value == 3
    assert figure.notes == ("greedy tokens equal to the float32 model as trained, of the first "
                            "6; the first difference is token 3 (why a step can differ: "
                            "docs/benchmarks.md); note")


def test_cpu_script_names_an_unknown_preset_in_one_line(tmp_path, capsys):
    output = tmp_path / "cpu.json"
    assert baselines_cpu.main(["--presets", "nano", "--threads", "1", "-o", str(output)]) == 1
    assert capsys.readouterr().err.startswith(
        "python -m tern_fpga.explore.baselines_cpu: error: unknown model preset 'nano'; choose "
        "one of ")
    assert not output.exists()


def test_cpu_script_refuses_its_output_before_measuring(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(baselines_cpu, "measure_presets", lambda *args, **kwargs: pytest.fail(
        "measured before the output was checked"))
    other = tmp_path / "notes.txt"
    other.write_text("my notes")
    assert baselines_cpu.main(["--threads", "1", "-o", str(other)]) == 1
    assert capsys.readouterr().err.startswith(
        f"python -m tern_fpga.explore.baselines_cpu: error: -o {other}")
    assert other.read_text() == "my notes"


def test_a_variant_measured_with_a_chosen_blas_library_has_its_own_name():
    assert baselines_gpu.variant_name("lean_compiled_float32_b8") == "lean_compiled_float32_b8"
    assert baselines_gpu.variant_name("lean_compiled_float32_b8", "cublaslt") == \
        "lean_compiled_float32_cublaslt_b8"
    assert baselines_gpu.variant_name("lean_compiled_float32", "cublas") == \
        "lean_compiled_float32_cublas"
    names = {baselines_gpu.variant_name(variant, blas) for variant, *_ in variants(True)
             for blas in ("", "cublas", "cublaslt")}
    assert len(names) == 3 * len(list(variants(True)))


def test_device_facts_ask_nvidia_smi_about_the_gpu_measured(monkeypatch):
    asked = []

    def nvidia_smi(command, **options):
        asked.append(command[command.index("-i") + 1])
        return types.SimpleNamespace(stdout=" 700.00 W\n")

    monkeypatch.setattr(baselines_gpu.subprocess, "run", nvidia_smi)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H200")
    facts = baselines_gpu._device_facts("cuda:1")
    assert facts["device"] == "NVIDIA H200" and facts["power_limit"] == "700.00 W"
    assert asked == ["1", "1"]
