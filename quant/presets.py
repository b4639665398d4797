"""Named model sizes and their training recipes: ``tiny``, ``micro``, ``demo`` and ``stdlib``.

All are byte-level (vocabulary 256). ``micro`` and ``demo`` are the two shipped models,
sized for the boards of the accelerator presets of the same name in
:mod:`tern_fpga.contracts.params`:

``micro``
    d=64, 4 layers, I=256: 278,528 ternary weights, for the iCE40UP5K's 128 KB SPRAM.
``demo``
    d=128, 4 layers, I=512 (the reference formula's value for d=128): 1,081,344 ternary
    weights, for the ECP5-85F's block RAM.
``tiny``
    d=32, 2 layers, I=64: a few seconds of CPU training, for tests.
``stdlib``
    d=512, 6 layers, I=1536 (the reference formula's value for d=512): 20,578,304 ternary
    weights (5.1 MB at 2 bits), too many for any FPGA's block RAM: the model for weights
    streamed from external memory (SDRAM). Trained on the ``stdlib`` corpus
    (:mod:`tern_fpga.quant.stdlib_corpus`, 31 MB), the others on the 2.7 MB ``docs`` corpus.

Each preset's :class:`TrainingHyperparameters` are the ones its shipped checkpoint was trained
with (on one H200, see ``docs/training.md``); ``tern train`` options override them one by one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tern_fpga.contracts.errors import TernError
from tern_fpga.quant.config import HGRNBitConfig

__all__ = ["CORPORA", "PRESETS", "Preset", "TrainingHyperparameters", "get_preset"]

# Training corpora by name: the compressed text, with its manifest corpus.json beside it.
_DATA_DIR = Path(__file__).resolve().parent / "data"
CORPORA = {
    # Shipped in git (tern_fpga.quant.data).
    "docs": _DATA_DIR / "corpus.txt.xz",
    # Built locally by `python -m tern_fpga.quant.stdlib_corpus`; only the manifest is in git.
    "stdlib": _DATA_DIR / "stdlib" / "corpus.txt.xz",
}


@dataclasses.dataclass(frozen=True)
class TrainingHyperparameters:
    """How one preset is trained: AdamW, linear warm-up, cosine decay, gradient clipping.

    Parameters
    ----------
    steps : int
        Optimiser steps.
    batch_size, seq_len : int
        Windows per step and bytes per window.
    lr : float
        Peak learning rate, reached after ``warmup_steps``.
    min_lr_ratio : float
        The cosine decays from ``lr`` to ``lr * min_lr_ratio`` at the last step.
    warmup_steps : int
        Linear warm-up from ``lr / warmup_steps``.
    weight_decay : float
        AdamW decoupled weight decay, applied to projection and embedding matrices only
        (not to norm weights or the forget-gate lower bounds).
    betas : tuple of float
        AdamW's moment decay rates.
    grad_clip : float
        Largest global gradient norm.
    eval_interval : int
        Steps between held-out evaluations (and the last step).
    eval_bytes : int or None
        Held-out bytes evaluated, during training and at the end (the first ones); ``None``
        for all. Only ``tiny`` limits it, to keep tests fast.
    log_interval : int
        Steps averaged into one point of the logged loss curve.
    """

    steps: int
    batch_size: int
    seq_len: int
    lr: float
    warmup_steps: int
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_interval: int = 500
    eval_bytes: int | None = None
    log_interval: int = 50

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_interval", "log_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TernError(f"{name} must be a positive integer, not {value!r}")
        if isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int) or \
                self.seq_len < 2:
            raise TernError(f"seq_len must be an integer of at least 2, not {self.seq_len!r}")
        if not self.lr > 0:
            raise TernError(f"lr must be a positive number, not {self.lr!r}")
        if not (isinstance(self.warmup_steps, int) and self.warmup_steps >= 0):
            raise TernError(f"warmup_steps must be a non-negative integer, "
                            f"not {self.warmup_steps!r}")

    def replace(self, **changes) -> TrainingHyperparameters:
        """A copy with some fields changed; ``None`` values are left out. A shorter run keeps
        its warm-up to at most a tenth of the steps and evaluates at least at its end."""
        changes = {key: value for key, value in changes.items() if value is not None}
        result = dataclasses.replace(self, **changes)
        if "steps" in changes and "warmup_steps" not in changes:
            result = dataclasses.replace(
                result, warmup_steps=min(result.warmup_steps, result.steps // 10))
        return result

    def to_dict(self) -> dict:
        """The fields as JSON types (``betas`` as a list)."""
        return {**dataclasses.asdict(self), "betas": list(self.betas)}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A model size and its training recipe.

    Members
    -------
    name : str
        The preset's name (``tern train --preset NAME``).
    model : dict
        Keyword arguments of :class:`quant.HGRNBitConfig`.
    training : TrainingHyperparameters
        The recipe.
    accelerator : str or None
        The :mod:`tern_fpga.contracts.params` preset whose memories hold this model, if any.
    corpus : str
        The training corpus, a key of :data:`CORPORA`.
    """

    name: str
    model: dict
    training: TrainingHyperparameters
    accelerator: str | None = None
    corpus: str = "docs"

    def __post_init__(self):
        if self.corpus not in CORPORA:
            raise TernError(f"preset {self.name!r} names corpus {self.corpus!r}; choose one of "
                            f"{', '.join(CORPORA)}")

    @property
    def corpus_path(self) -> Path:
        """The compressed corpus file (its manifest ``corpus.json`` is beside it)."""
        return CORPORA[self.corpus]

    def config(self):
        """The model's :class:`quant.HGRNBitConfig`."""
        return HGRNBitConfig(**self.model)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        model={"vocab_size": 256, "hidden_size": 32, "num_hidden_layers": 2,
               "intermediate_size": 64},
        training=TrainingHyperparameters(
            steps=200, batch_size=8, seq_len=64, lr=3e-3, warmup_steps=10,
            eval_interval=100, eval_bytes=4096, log_interval=10)),
    "micro": Preset(
        name="micro",
        model={"vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 4,
               "intermediate_size": 256},
        training=TrainingHyperparameters(
            steps=12000, batch_size=256, seq_len=256, lr=3e-3, warmup_steps=300),
        accelerator="micro"),
    "demo": Preset(
        name="demo",
        # intermediate_size None: the reference formula gives 256 * ceil(341 / 256) = 512.
        model={"vocab_size": 256, "hidden_size": 128, "num_hidden_layers": 4,
               "intermediate_size": None},
        training=TrainingHyperparameters(
            steps=8000, batch_size=256, seq_len=256, lr=2e-3, warmup_steps=300),
        accelerator="demo"),
    "stdlib": Preset(
        name="stdlib",
        # d=512: a multiple of every accelerator preset's ternary_lanes; 6 layers: 20.6 M
        # ternary weights, mid-range of issue 16's 10-30 M, trained in under 6 minutes on one
        # GPU. intermediate_size None: 256 * ceil(1365 / 256) = 1536.
        model={"vocab_size": 256, "hidden_size": 512, "num_hidden_layers": 6,
               "intermediate_size": None},
        training=TrainingHyperparameters(
            steps=2750, batch_size=256, seq_len=256, lr=1.5e-3, warmup_steps=200,
            eval_interval=250),
        corpus="stdlib"),
}


def get_preset(name: str) -> Preset:
    """The named preset.

    Raises
    ------
    TernError
        If there is no such preset; the message lists the known ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise TernError(f"unknown model preset {name!r}; choose one of "
                        f"{', '.join(sorted(PRESETS))}") from None
