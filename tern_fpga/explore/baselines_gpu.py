"""The strongest GPU baseline we can write: the lean decode, compiled and captured as CUDA graphs.

:class:`GraphDecoder` captures ``steps`` consecutive greedy steps of a
:class:`~tern_fpga.explore.baselines_lean.LeanDecoder` (``torch.compile``-fused, or eager) as
one CUDA graph: each replay decodes ``steps`` tokens for each of ``batch`` streams with no Python
and no host synchronisation between tokens (the arg-max feeds the next step on the GPU).

:func:`measure` times replays like :mod:`tern_fpga.explore.baselines` (median of several runs
sized from a calibration) and meters power with ``nvidia-smi`` (sampled in the meter's background
thread during a separate run of several seconds, after an idle baseline with the model loaded).
Tokens/s at batch ``B`` counts every stream's tokens. Every variant's first 128 tokens are
compared with the model as trained in float32 on the same GPU.

As a script (on a machine with an NVIDIA GPU; the figures go to ``bench/measured/``, which
``tern bench`` merges)::

    python -m tern_fpga.explore.baselines_gpu -o bench/measured/gpu_baselines.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time

import torch

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.output_paths import add_force_argument
from tern_fpga.explore.baselines import decode_rates, energy_figures, load_baseline_model
from tern_fpga.explore.baselines_lean import LeanDecoder, agreement_figure, reference_tokens
from tern_fpga.explore.report import Figure, figures_output, machine_description
from tern_fpga.host.meters import MeterError, NvidiaSmiMeter, measure_generation

__all__ = ["GraphDecoder", "main", "measure", "run_presets", "variant_name", "variants"]

SOURCE = "tern_fpga.explore.baselines_gpu"
STEPS_PER_GRAPH = 32
TOKENS_CHECKED = 128
SWEEP_BATCHES = (1, 8, 64, 512)


class GraphDecoder:
    """``steps`` greedy steps of ``decoder`` for ``batch`` streams as one CUDA graph.

    Stream 0 starts from the prompt's state and first token; the others from the same state and
    a random first token each (seed ``seed``), so the streams decode different text.
    """

    def __init__(self, decoder: LeanDecoder, batch: int, compiled: bool,
                 steps: int = STEPS_PER_GRAPH, seed: int = 0):
        self.batch, self.steps = batch, steps
        step = torch.compile(decoder.step, dynamic=False, fullgraph=True) if compiled \
            else decoder.step
        token, state = decoder.prime(batch=batch)
        if batch > 1:
            generator = torch.Generator().manual_seed(seed)
            others = torch.randint(decoder.config.vocab_size, (batch - 1,), generator=generator)
            token = torch.cat([token[:1], others.to(token.device)])
        self.start_tokens, self.start_state = token.clone(), state.clone()
        self.tokens, self.state = token.clone(), state.clone()
        self.output = torch.zeros(steps, batch, dtype=torch.long, device=token.device)
        self._step, self.graph = step, None
        self.sync = torch.cuda.synchronize if token.device.type == "cuda" else (lambda: None)
        if token.device.type != "cuda":
            return  # no capture: replay() runs the steps one by one (the CPU tests use this)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            tokens, state = self.tokens, self.state
            for _ in range(3):  # compiles and loads kernels outside the capture
                tokens, state = step(tokens, state)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._run_steps()

    def _run_steps(self):
        tokens, state = self.tokens, self.state
        for index in range(self.steps):
            tokens, state = self._step(tokens, state)
            self.output[index].copy_(tokens)
        self.tokens.copy_(tokens)
        self.state.copy_(state)

    def replay(self, _=None):
        """Decode ``steps`` more tokens per stream (queued; not synchronised)."""
        if self.graph is None:
            self._run_steps()
        else:
            self.graph.replay()

    def reset(self):
        self.tokens.copy_(self.start_tokens)
        self.state.copy_(self.start_state)

    def first_stream_tokens(self, count: int) -> list[int]:
        """Stream 0's first ``count`` tokens from the start, the primed first token included
        (resets, then replays)."""
        self.reset()
        tokens = [int(self.start_tokens[0])]
        while len(tokens) < count:
            self.replay()
            tokens += self.output[:, 0].tolist()
        self.reset()
        return tokens[:count]


def _nvidia_meter(index: int):
    """nvidia-smi's instantaneous power field where the driver offers it, else the one-second
    average; ``(None, why)`` without nvidia-smi."""
    for field in ("power.draw.instant", "power.draw"):
        try:
            meter = NvidiaSmiMeter(index, field=field)
            meter.read_watts()
            return meter, ""
        except MeterError as error:
            why = str(error)
    return None, f"power not measured: {why}"


def measure(graph: GraphDecoder, name: str, notes: str, machine: str, meter=None,
            idle: float | None = None, runs: int = 5, seconds_per_run: float = 1.0,
            metered_seconds: float = 5.0) -> list[Figure]:
    """Tokens/s (all streams; median of ``runs``) and, with ``meter`` (its idle baseline
    ``idle`` already taken), power and energy per token of ``graph``'s replays."""
    per_replay = graph.steps * graph.batch
    rates = [rate * per_replay for rate in decode_rates(
        graph.replay, None, runs, seconds_per_run, 2, graph.sync)]
    spread = (f"median of {len(rates)} runs, range {min(rates):.4g} to {max(rates):.4g}; "
              f"{graph.batch} stream{'s' if graph.batch > 1 else ''}, {graph.steps} tokens "
              f"per stream per graph replay; {notes}")
    figures = [Figure(f"{name}.tokens_per_s", statistics.median(rates), "tokens/s", "measured",
                      SOURCE, spread, machine)]
    if meter is None:
        return figures
    replays = max(1, round(statistics.median(rates) / per_replay * 0.5))

    def generate():
        done, start = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - start < metered_seconds:
            for _ in range(replays):
                graph.replay()
            graph.sync()
            done += replays * per_replay
        return done

    result = measure_generation(meter, generate)
    metered = (f"{meter.description}, {result.samples} samples over {result.seconds:.1f} s at "
               f"{result.tokens_per_s:.4g} tokens/s; idle baseline {idle:.4g} W with the model "
               f"loaded; {spread}")
    return figures + energy_figures(name, result, idle, metered, machine, SOURCE)


def _agreement(graph: GraphDecoder, reference: list[int], name: str, notes: str,
               machine: str) -> Figure:
    return agreement_figure(name, graph.first_stream_tokens(len(reference)), reference,
                            "greedy tokens (stream 0) equal to the float32 model as trained on "
                            "the same GPU", notes, machine, SOURCE)


def _device_facts(device: str) -> dict:
    index = torch.device(device).index or 0     # nvidia-smi's -i: the GPU measured

    def query(field):
        try:
            return subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader",
                                   "-i", str(index)], capture_output=True, text=True,
                                  timeout=20, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    cuda = torch.device(device).type == "cuda"
    return {"date": datetime.date.today().isoformat(),
            "device": torch.cuda.get_device_name(device) if cuda else machine_description(),
            "driver": query("driver_version") if cuda else "none",
            "power_limit": query("power.limit") if cuda else "none",
            "torch": torch.__version__, "cuda": torch.version.cuda}


def variants(sweep: bool):
    """(name, matmul dtype, compiled, batch) in the order they are measured; the dtype variants
    and the batch sweep only where ``sweep``."""
    yield "lean_compiled_float32", "float32", True, 1
    yield "lean_graph_float32", "float32", False, 1
    yield "lean_compiled_bfloat16", "bfloat16", True, 1
    if sweep:
        yield "lean_compiled_float16", "float16", True, 1
        for batch in SWEEP_BATCHES[1:]:
            yield f"lean_compiled_float32_b{batch}", "float32", True, batch


def variant_name(variant: str, blas: str = "") -> str:
    """The figures' name for ``variant`` measured with ``blas`` preferred (``""``: PyTorch's
    choice): the library before the batch suffix, so that a run with another library does not
    give the same names (``lean_compiled_float32_cublaslt_b8``)."""
    if not blas:
        return variant
    base, batch, number = variant.rpartition("_b")
    if base and number.isdigit():
        return f"{base}_{blas}{batch}{number}"
    return f"{variant}_{blas}"


def run_presets(presets, sweep_preset: str, deadline: float, save, device: str = "cuda",
                meter=None, why: str = "", progress=print, only=(), blas: str = "",
                **timing) -> dict:
    """Measure every variant (or those named in ``only``) of every preset until ``deadline``
    (``time.monotonic()``), with ``blas`` (``"cublaslt"``, ``"cublas"``) as PyTorch's preferred
    BLAS library if given, calling
    ``save(document)`` after each (the figures so far, the device's facts, the variants skipped
    or failed); ``timing``: :func:`measure`'s keyword arguments.

    Raises
    ------
    TernError
        If ``only`` names a variant that :func:`variants` does not have.
    """
    known = [name for name, *_ in variants(True)]
    unknown = [name for name in only if name not in known]
    if unknown:
        raise TernError(f"no variant {', '.join(map(repr, unknown))}; the variants are "
                        f"{', '.join(known)}")
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    if blas:
        # cuBLAS's own heuristic picks a split-K kernel with memsets for 8 x 128 float32
        # products on the H200 (1.1 ms a step); cuBLASLt's does not (measured 2026-12-04).
        torch.backends.cuda.preferred_blas_library(blas)
    facts = _device_facts(device)
    machine = f"{facts['device']} (driver {facts['driver']}, torch {facts['torch']})"
    document = {**facts, "figures": [], "skipped": []}
    with torch.inference_mode():
        for preset in presets:
            model, note = load_baseline_model(None, preset)
            reference = reference_tokens(model, TOKENS_CHECKED, device=device)
            idle = None
            if meter is not None:
                time.sleep(1.0)
                idle = meter.idle_baseline(timing.get("metered_seconds", 5.0))
            for variant, dtype, compiled, batch in variants(preset == sweep_preset):
                if only and variant not in only:
                    continue
                name = f"gpu_baseline.{preset}.{variant_name(variant, blas)}"
                if time.monotonic() > deadline:
                    document["skipped"].append(f"{name}: out of time")
                    continue
                start = time.perf_counter()
                how = "torch.compile (Inductor) and" if compiled else "eager PyTorch,"
                library = f", {blas} preferred for matrix products" if blas else ""
                notes = (f"lean greedy decode ({how} CUDA graph), weights ternarised once, "
                         f"matrix products in {dtype}{library}; {note}"
                         f"{'; ' + why if why else ''}")
                torch._dynamo.reset()
                try:
                    graph = GraphDecoder(LeanDecoder(model, dtype, device), batch, compiled)
                    figures = [_agreement(graph, reference, name, notes, machine)]
                    figures += measure(graph, name, notes, machine, meter, idle, **timing)
                except Exception as error:  # noqa: BLE001 (one variant's failure is reported)
                    document["skipped"].append(f"{name}: {type(error).__name__}: {error}")
                    progress(f"{name}: FAILED {type(error).__name__}: {error}")
                    continue
                document["figures"] += [figure.to_dict() for figure in figures]
                save(document)
                shown = ", ".join(f"{f.name.rsplit('.', 1)[1]}={f.value:.4g}" for f in figures)
                progress(f"{name} ({time.perf_counter() - start:.0f} s): {shown}")
    save(document)
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tern_fpga.explore.baselines_gpu",
        description="Lean batch-1 decode and batch sweep on a CUDA GPU, with nvidia-smi power; "
                    "writes the figures as JSON (tern bench merges bench/measured/*.json).")
    parser.add_argument("--presets", nargs="+", default=["demo", "micro"])
    parser.add_argument("--sweep-preset", default="demo",
                        help="the preset that also gets the dtype variants and batch sweep")
    parser.add_argument("--variants", nargs="+", default=[], metavar="NAME",
                        help="measure only these variants (default: all of variants())")
    parser.add_argument("--blas", choices=("cublas", "cublaslt"), default="",
                        help="PyTorch's preferred BLAS library (default: PyTorch's choice)")
    parser.add_argument("--deadline-s", type=float, default=400.0,
                        help="skip the variants not started after this many seconds")
    parser.add_argument("-o", "--output", required=True, help="JSON file to write")
    add_force_argument(parser, "an existing file that is not a figures file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"{parser.prog}: error: this torch ({torch.__version__}) sees no CUDA device; run "
              f"it on a machine with an NVIDIA GPU", file=sys.stderr)
        return 1
    try:
        output = figures_output(args.output, args.force)    # now, not after minutes of runs
    except TernError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1

    def save(document):
        output.write_text(json.dumps(document, indent=2) + "\n")

    meter, why = _nvidia_meter(0)
    try:
        document = run_presets(args.presets, args.sweep_preset,
                               time.monotonic() + args.deadline_s, save, meter=meter, why=why,
                               only=args.variants, blas=args.blas,
                               progress=lambda line: print(line, flush=True))
    except TernError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    finally:
        if meter is not None:
            meter.close()
    print(f"wrote {output}: {len(document['figures'])} figures, "
          f"{len(document['skipped'])} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
