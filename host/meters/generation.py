"""Energy per token of one generation run: :func:`measure_generation`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sized

from tern_fpga.host.meters.base import Meter

__all__ = ["GenerationMeasurement", "measure_generation"]


@dataclasses.dataclass(frozen=True)
class GenerationMeasurement:
    """Speed and energy of one generation.

    Members
    -------
    tokens : int
        Tokens generated.
    seconds : float
        Wall-clock time of the generation.
    tokens_per_s : float
    mean_watts : float
        Mean power over the run, idle power included.
    joules : float
        Energy over the run, idle power included: ``mean_watts * seconds``.
    baseline_watts : float or None
        The meter's idle baseline, if one was taken.
    joules_per_token : float
        Idle-subtracted (``(joules - baseline_watts * duration) / tokens``) when a baseline was
        taken, else the gross energy per token; :attr:`idle_subtracted` says which.
    idle_subtracted : bool
    samples : int
        Meter samples over the run.
    """

    tokens: int
    seconds: float
    tokens_per_s: float
    mean_watts: float
    joules: float
    baseline_watts: float | None
    joules_per_token: float
    idle_subtracted: bool
    samples: int

    @property
    def gross_joules_per_token(self) -> float:
        return self.joules / self.tokens

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "gross_joules_per_token": self.gross_joules_per_token}


def measure_generation(meter: Meter, generate_fn: Callable[[], Sized | int],
                       rate_hz: float | None = None) -> GenerationMeasurement:
    """Run ``generate_fn()`` with ``meter`` sampling.

    Parameters
    ----------
    meter : Meter
        Take :meth:`Meter.idle_baseline` first to get idle-subtracted energy per token.
    generate_fn : callable
        Generates and returns the new tokens (a sequence) or their count.
    rate_hz : float or None
        Sampling rate; the meter's default if ``None``.

    Raises
    ------
    ValueError
        If ``generate_fn`` generated no tokens.
    MeterError
        If the meter fails.
    """
    with meter.sampling(rate_hz):
        start = time.perf_counter()
        result = generate_fn()
        seconds = time.perf_counter() - start
    tokens = result if isinstance(result, int) else len(result)
    if tokens <= 0:
        raise ValueError(f"the generation produced {tokens} tokens; nothing to measure")
    # The samples span a little more than the run (one at each end, after start-up and after
    # the last token), so energy is the samples' mean power times the run's own duration.
    baseline, mean_watts = meter.baseline_watts, meter.mean_watts
    joules = mean_watts * seconds
    energy = joules if baseline is None else (mean_watts - baseline) * seconds
    return GenerationMeasurement(
        tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds,
        mean_watts=mean_watts, joules=joules, baseline_watts=baseline,
        joules_per_token=energy / tokens, idle_subtracted=baseline is not None,
        samples=len(meter.samples))
