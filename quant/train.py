"""Quantisation-aware training of a byte-level MatMul-free LM from scratch.

The model's :class:`~tern_fpga.quant.bitlinear.BitLinear` layers already fake-quantise (int8
activations, ternary weights, straight-through gradients), so training is a plain next-byte loop:
random windows of the training split (:mod:`tern_fpga.quant.data`), AdamW with linear warm-up and
cosine decay, global gradient clipping, and a held-out evaluation in bits per byte every
``eval_interval`` steps. Everything runs in float32, also on a GPU: bf16 would move the activations
before they are rounded to int8, and these models are far too small for the matrix units to matter.
Larger models may train with ``tf32=True``: the training steps' matrix products then round their
inputs to TF32 on the GPU's matrix units; the evaluations and the saved model stay float32.

A run is deterministic from its seed: the initial weights come from ``torch.manual_seed(seed)``
(drawn on the CPU whatever the device) and the batches from a separate CPU generator seeded with
``seed``. On the CPU two runs with the same seed and thread count give identical weights; on a
GPU, PyTorch's deterministic algorithms are switched on for the run.

:func:`train` writes into the output folder the checkpoint (``config.json``,
``model.safetensors``, float32), ``training_log.json`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import torch
from tqdm import tqdm

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.output_paths import check_output_folder
from tern_fpga.quant import data as corpus
from tern_fpga.quant.bitlinear import BitLinear
from tern_fpga.quant.checkpoint import save_pretrained
from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.quant.model import HGRNBitForCausalLM
from tern_fpga.quant.presets import Preset, TrainingHyperparameters, get_preset

__all__ = ["SAMPLE_BYTES", "SAMPLE_PROMPT", "learning_rate", "resolve_device", "train"]

# The model card's sample: greedy continuation of a fixed prompt, so cards can be compared.
SAMPLE_PROMPT = "The for statement is used to"
SAMPLE_BYTES = 240


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` (or ``"cuda:N"``), or ``"auto"`` (CUDA when present).

    Raises
    ------
    TernError
        For an unknown name, or CUDA asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise TernError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU; "
                            f"use --device cpu or --device auto")
        return torch.device(name)
    raise TernError(f"unknown device {name!r}; use cpu, cuda or auto")


def learning_rate(step: int, hyper: TrainingHyperparameters) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up to ``lr`` over
    ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio`` at the last step."""
    if step < hyper.warmup_steps:
        return hyper.lr * (step + 1) / hyper.warmup_steps
    decay_steps = max(hyper.steps - 1 - hyper.warmup_steps, 1)
    progress = min((step - hyper.warmup_steps) / decay_steps, 1.0)
    floor = hyper.lr * hyper.min_lr_ratio
    return floor + (hyper.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


# What a run writes into its output folder (none is recognised: an earlier run's needs --force).
OUTPUT_FILES = ("config.json", "model.safetensors", "training_log.json", "MODEL_CARD.md")


def _prepare_output(output_dir: Path, force: bool):
    check_output_folder(output_dir, dict.fromkeys(OUTPUT_FILES), force=force, empty=True)
    output_dir.mkdir(exist_ok=True)


def _optimizer(model: torch.nn.Module, hyper: TrainingHyperparameters):
    # Decay the projection and embedding matrices only: decaying norm gains or the forget-gate
    # lower bounds would pull them towards zero, which is not a "small weights" prior for them.
    decay, keep = [], []
    for name, parameter in model.named_parameters():
        (decay if parameter.dim() == 2 and name.endswith(".weight") else keep).append(parameter)
    groups = [{"params": decay, "weight_decay": hyper.weight_decay},
              {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hyper.lr, betas=hyper.betas)


def _weight_counts(model: torch.nn.Module) -> dict:
    ternary = sum(m.weight.numel() for m in model.modules() if isinstance(m, BitLinear))
    total = sum(p.numel() for p in model.parameters())
    return {"ternary_weights": ternary, "other_parameters": total - ternary}


def _sample(model: torch.nn.Module, device: torch.device) -> str:
    prompt = torch.tensor([list(SAMPLE_PROMPT.encode())], device=device)
    was_training = model.training
    model.eval()
    try:
        tokens = model.generate(prompt, max_new_tokens=SAMPLE_BYTES)
    finally:
        model.train(was_training)
    return bytes(tokens[0].tolist()).decode("utf-8", errors="replace")


class _Deterministic:
    """Turn on PyTorch's deterministic algorithms for a GPU run, and restore the setting."""

    def __init__(self, device: torch.device):
        self._on = device.type == "cuda"

    def __enter__(self):
        if self._on:
            self._previous = torch.are_deterministic_algorithms_enabled()
            # cuBLAS needs a fixed workspace for reproducible results (PyTorch's documentation).
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)

    def __exit__(self, *exc):
        if self._on:
            torch.use_deterministic_algorithms(self._previous)


def train(preset: str | Preset, output_dir: str | os.PathLike, *, steps: int | None = None,
          device: str = "cpu", seed: int = 0, batch_size: int | None = None,
          seq_len: int | None = None, lr: float | None = None, force: bool = False,
          compile: bool = False, tf32: bool = False, progress: bool = True) -> dict:
    """Train a preset's model from scratch and write checkpoint, log and model card.

    Parameters
    ----------
    preset : str or Preset
        ``"tiny"``, ``"micro"``, ``"demo"`` (see :mod:`tern_fpga.quant.presets`) or a
        :class:`Preset`.
    output_dir : path
        Folder for ``config.json``, ``model.safetensors``, ``training_log.json`` and
        ``MODEL_CARD.md``; created if missing, and must be empty unless ``force``.
    steps, batch_size, seq_len, lr : optional
        Override the preset's hyper-parameters.
    device : str
        ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.
    seed : int
        Seeds the initial weights and the batch order.
    force : bool
        Overwrite the files of an earlier run in ``output_dir``.
    compile : bool
        Run the training steps through ``torch.compile`` (about 5 times faster on an H200,
        after about 45 s of compilation); evaluation and the saved model are not affected.
    tf32 : bool
        Let the training steps' float32 matrix products use TF32 on a CUDA GPU (several times
        faster for d >= 512); held-out evaluations, the sample and the saved model stay float32.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    dict
        The training log, as written to ``training_log.json``.

    Raises
    ------
    TernError
        For an unknown preset or device, a bad hyper-parameter, or a non-empty output folder.
    """

    if isinstance(preset, str):
        preset = get_preset(preset)
    hyper = preset.training.replace(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TernError(f"seed must be a non-negative integer, not {seed!r}")
    torch_device = resolve_device(device)
    output_dir = Path(output_dir)
    _prepare_output(output_dir, force)
    # The output folder is left out: a checkpoint is often moved after training.
    command = (f"tern train --preset {preset.name} -o DIR --steps {hyper.steps} "
               f"--batch-size {hyper.batch_size} --seq-len {hyper.seq_len} --lr {hyper.lr} "
               f"--seed {seed} --device {device}" + (" --compile" if compile else "")
               + (" --tf32" if tf32 else ""))

    splits = corpus.load_splits(preset.corpus_path)
    train_data = splits.train.to(torch_device)
    heldout = splits.heldout.to(torch_device)
    config = preset.config()
    torch.manual_seed(seed)
    model = HGRNBitForCausalLM(config).to(torch_device)
    model.train()
    step_model = torch.compile(model) if compile else model
    optimizer = _optimizer(model, hyper)
    generator = torch.Generator().manual_seed(seed)

    losses, evaluations = [], []
    window_sum, window_count = 0.0, 0
    eval_seconds, first_step_seconds = 0.0, 0.0
    start = time.perf_counter()
    with _Deterministic(torch_device), _TF32(tf32), _progress_bar(hyper.steps, progress) as bar:
        for step in range(hyper.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, hyper)
            batch = corpus.random_batch(train_data, hyper.batch_size, hyper.seq_len, generator)
            loss = step_model(batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), hyper.grad_clip)
            optimizer.step()
            if step == 0:
                # The first step includes one-off costs (compilation, CUDA start-up).
                float(loss.detach())
                first_step_seconds = time.perf_counter() - start

            # Reading the loss synchronises with the GPU, so only at the end of a log window.
            window_sum += loss.detach()
            window_count += 1
            done = step + 1
            if window_count == hyper.log_interval or done == hyper.steps:
                mean = float(window_sum) / window_count
                losses.append({"step": done, "loss": mean, "lr": learning_rate(step, hyper)})
                window_sum, window_count = 0.0, 0
                rate = done * hyper.batch_size * hyper.seq_len / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{mean:.3f}", bytes_per_s=f"{rate:.3g}", refresh=False)
            if done % hyper.eval_interval == 0 or done == hyper.steps:
                eval_start = time.perf_counter()
                with _TF32(False):
                    bpb = corpus.bits_per_byte(model, heldout, hyper.seq_len,
                                               max_bytes=hyper.eval_bytes)
                eval_seconds += time.perf_counter() - eval_start
                evaluations.append({"step": done, "heldout_bits_per_byte": bpb})
                bar.write(f"step {done}: held-out {bpb:.4f} bits/byte")
            bar.update(1)
    if torch_device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - start

    final_bpb = corpus.bits_per_byte(model, heldout, hyper.seq_len, max_bytes=hyper.eval_bytes)
    sample = _sample(model, torch_device)
    model = model.cpu().float()
    save_pretrained(model, output_dir)
    log = {
        "preset": preset.name,
        "command": command,
        "config": config.to_dict(),
        **_weight_counts(model),
        "accelerator_preset": preset.accelerator,
        "hyperparameters": hyper.to_dict(),
        "optimizer": "AdamW",
        "compiled": compile,
        "tf32": tf32,
        "corpus": preset.corpus,
        "seed": seed,
        "steps": hyper.steps,
        "bytes_seen": hyper.steps * hyper.batch_size * hyper.seq_len,
        "loss_curve": losses,
        "evaluations": evaluations,
        "final_train_loss": losses[-1]["loss"],
        "heldout_bits_per_byte": final_bpb,
        "heldout_bytes": len(splits.heldout),
        "heldout_bytes_evaluated": len(heldout[:hyper.eval_bytes]),
        "train_bytes": len(splits.train),
        "corpus_sha256": splits.sha256,
        "sample_prompt": SAMPLE_PROMPT,
        "sample": sample,
        "device": _device_name(torch_device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "threads": torch.get_num_threads(),
        "wall_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "first_step_seconds": first_step_seconds,
        # Training steps alone: the first step (compilation, start-up) and the periodic
        # held-out evaluations are left out of the rate.
        "steps_per_second": (hyper.steps - 1) / max(
            train_seconds - eval_seconds - first_step_seconds, 1e-9) if hyper.steps > 1
        else 1 / first_step_seconds,
    }
    (output_dir / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    (output_dir / "MODEL_CARD.md").write_text(model_card(log))
    return log


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class _TF32:
    """Allow (or forbid) TF32 in float32 matrix products and convolutions, and restore."""

    def __init__(self, enabled: bool):
        self._enabled = enabled

    def __enter__(self):
        self._previous = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = self._enabled
        torch.backends.cudnn.allow_tf32 = self._enabled

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._previous


class _progress_bar:
    """A tqdm bar, or a silent stand-in with the same three methods."""

    def __init__(self, total: int, enabled: bool):
        self._total, self._enabled = total, enabled

    def __enter__(self):
        if self._enabled:
            self._bar = tqdm(total=self._total, unit="step", dynamic_ncols=True)
            return self._bar
        return self

    def __exit__(self, *exc):
        if self._enabled:
            self._bar.close()

    def update(self, count):
        pass

    def set_postfix(self, **values):
        pass

    def write(self, text):
        pass


_FLOAT32_STORAGE = ("float32 latent weights (`model.safetensors`), ternarised at every "
                    "forward")
# The model card's description of each corpus (quant.presets.CORPORA), with {sha256}.
_CORPUS_TEXT = {
    "docs": """The Python standard library's documentation: the `pydoc_data.topics` reference topics and the
docstrings of the standard-library modules, shipped as `quant/data/corpus.txt.xz` (SHA-256
`{sha256}`; `quant/data/corpus.json` records the Python version and module list).""",
    "stdlib": """The Python standard library's own sources and reference manual: the `pydoc_data.topics`
reference topics and every `.py` file of the standard library (tests included), one document per
topic or file, built by `python -m tern_fpga.quant.stdlib_corpus` into
`quant/data/stdlib/corpus.txt.xz` (not in git; SHA-256 `{sha256}`, checked against
`quant/data/stdlib/corpus.json`, which records the Python version and the file list).""",
}


def model_card(log: dict) -> str:
    """The ``MODEL_CARD.md`` text of a training log (see :func:`train`)."""
    config, hyper = log["config"], log["hyperparameters"]  # here, not at the top: loads torch
    intermediate = HGRNBitConfig.from_dict(config).resolved_intermediate_size
    accelerator = (f" It fits the memories of the `{log['accelerator_preset']}` accelerator "
                   f"preset (`tern_fpga/contracts/params.py`)."
                   if log["accelerator_preset"] else "")
    fence = "~~~~"
    count = log["heldout_bytes_evaluated"]
    evaluated = (f"all {count:,}" if count == log["heldout_bytes"]
                 else f"the first {count:,} of {log['heldout_bytes']:,}")
    curve = ", ".join(f"{e['step']}: {e['heldout_bits_per_byte']:.3f}"
                      for e in log["evaluations"])
    return f"""# tern `{log['preset']}`: byte-level MatMul-free language model

A ternary-weight MatMul-free language model (`HGRNBitForCausalLM`, Zhu et al. 2024) trained
from scratch with quantisation-aware training by `tern train`.{accelerator}

| | |
|---|---|
| vocabulary | 256 (one token per byte, UTF-8 text) |
| hidden size d | {config['hidden_size']} |
| layers | {config['num_hidden_layers']} |
| GLU width I | {intermediate} |
| ternary weights | {log['ternary_weights']:,} |
| other parameters (embeddings, norms, lower bounds) | {log['other_parameters']:,} |
| stored as | {log.get('stored_as', _FLOAT32_STORAGE)} |

## Data

{_CORPUS_TEXT[log.get('corpus', 'docs')].format(sha256=log['corpus_sha256'])}
Documents whose SHA-256 is divisible by {corpus.HELDOUT_MODULUS} are held out:
{log['train_bytes']:,} training bytes, {log['heldout_bytes']:,} held-out bytes.

## Training

- command: `{log['command']}`
- {log['steps']:,} steps of {hyper['batch_size']} windows x {hyper['seq_len']} bytes
  ({log['bytes_seen']:,} bytes seen, {log['bytes_seen'] / log['train_bytes']:.1f} passes over
  the training split)
- AdamW, peak lr {hyper['lr']}, betas {tuple(hyper['betas'])}, weight decay
  {hyper['weight_decay']} (matrices only), {hyper['warmup_steps']} warm-up steps, cosine decay
  to {hyper['min_lr_ratio']} x peak, gradient norm clipped at {hyper['grad_clip']}
- seed {log['seed']}; device {log['device']}; torch {log['torch_version']};
  {log['wall_seconds']:.0f} s in all, {log['steps_per_second']:.1f} training steps/s after
  the first step ({log['first_step_seconds']:.0f} s)

## Results

- held-out cross entropy: **{log['heldout_bits_per_byte']:.3f} bits per byte** over {evaluated}
  held-out bytes, in windows of {hyper['seq_len']} bytes each run from a
  zero state (the first byte of a window is not scored); 8 bits is a uniform guess
- final training loss: {log['final_train_loss']:.3f} nats per byte
  ({log['final_train_loss'] / math.log(2):.3f} bits)
- held-out bits per byte during training (step: bpb): {curve}

## Sample

Greedy decoding of {SAMPLE_BYTES} bytes after the prompt `{log['sample_prompt']}`:

{fence}
{log['sample']}
{fence}

## Limitations

A model of this size learns the spelling, layout and common phrases of Python documentation,
not facts: its text is fluent-looking and often wrong. It exists to exercise the accelerator.
"""
