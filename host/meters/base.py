"""The :class:`Meter` interface: sample a power reading in a background thread during a run.

A meter is started (``with meter.sampling(rate_hz): ...``) around the work it measures; a
thread takes a :class:`Sample` at the given rate, one right at the start and one right after
the stop, so the samples span the whole run. Energy is integrated as the samples come (by the
trapezoid rule for meters that read power, exactly for meters that read an energy counter), and
:meth:`Meter.idle_baseline` records the idle power that :attr:`Meter.dynamic_joules` subtracts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time

from tern_fpga.contracts.errors import TernError

__all__ = ["Meter", "MeterError", "Sample"]

# How long start() waits for the first reading before calling the meter unresponsive.
FIRST_SAMPLE_TIMEOUT_S = 5.0


class MeterError(TernError):
    """A power meter that is absent, unreadable or answers nonsense."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One reading.

    Members
    -------
    time : float
        ``time.monotonic()`` when the reading was taken, seconds.
    watts : float
        Power: the instantaneous reading, or for an energy counter the mean over the interval
        since the previous sample (``nan`` for a counter's first sample).
    joules : float
        Energy since the first sample of the run.
    """

    time: float
    watts: float
    joules: float

    @classmethod
    def following(cls, previous: Sample | None, time: float, watts: float) -> Sample:
        """The sample of an instantaneous reading ``watts`` at ``time``, its energy
        integrated from ``previous`` by the trapezoid rule (``None``: the first sample)."""
        if previous is None:
            return cls(time, watts, 0.0)
        return cls(time, watts,
                   previous.joules + 0.5 * (previous.watts + watts) * (time - previous.time))


class Meter:
    """A power meter sampled by a background thread.

    Subclasses implement :meth:`read_watts` (one instantaneous reading), or override
    :meth:`_sample` (energy counters) or :meth:`_run` (meters that stream by themselves).

    Members
    -------
    description : str
        What is measured, for reports (e.g. ``"hwmon3 ina219 channel 1"``).
    samples : list of Sample
        The samples of the latest run (cleared at each start).
    baseline_watts : float or None
        Idle power recorded by :meth:`idle_baseline`.
    """

    default_rate_hz = 10.0

    def __init__(self, description: str):
        self.description = description
        self.samples: list[Sample] = []
        self.baseline_watts: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._first = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self):
        return f"<{type(self).__name__} {self.description}>"

    # Readings ----------------------------------------------------------------------------------

    def read_watts(self) -> float:
        """One instantaneous power reading, watts.

        Raises
        ------
        MeterError
            If the device cannot be read.
        """
        raise NotImplementedError

    def close(self):
        """Release the device (a serial port, a process); the meter cannot be used after."""

    def _sample(self, previous: Sample | None) -> Sample:
        """The next sample; ``previous`` is ``None`` for the first of a run."""
        # Timed at the middle of the reading: a serial meter's round trip takes ~0.1 s.
        start = time.monotonic()
        watts = self.read_watts()
        return Sample.following(previous, (start + time.monotonic()) / 2, watts)

    def _run(self, interval: float, stop: threading.Event):
        """Take samples every ``interval`` seconds until ``stop`` is set, then one more."""
        previous, due = None, time.monotonic()
        while True:
            previous = self._sample(previous)
            self._append(previous)
            if stop.is_set():
                return
            # Fixed-rate schedule: a slow reading delays one sample, not every later one.
            due = max(due + interval, time.monotonic())
            stop.wait(due - time.monotonic())

    def _append(self, sample: Sample):
        self.samples.append(sample)
        self._first.set()

    def _interrupt(self):
        """Unblock a sampling thread that does not return after ``stop`` (streaming meters)."""

    # Sampling ----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, rate_hz: float | None = None):
        """Start sampling at ``rate_hz`` (the meter's :attr:`default_rate_hz` by default);
        returns once the first sample is taken.

        Raises
        ------
        MeterError
            If the meter is already sampling, or gives no reading within a few seconds.
        ValueError
            If ``rate_hz`` is not positive.
        """
        rate_hz = self.default_rate_hz if rate_hz is None else rate_hz
        if not rate_hz > 0:
            raise ValueError(f"sampling rate must be a positive number of Hz, not {rate_hz!r}")
        if self.running:
            raise MeterError(f"{self.description} is already sampling; stop it first")
        self.samples = []
        self._stop.clear()
        self._first.clear()
        self._error = None
        self._thread = threading.Thread(target=self._thread_main, args=(1.0 / rate_hz,),
                                        name=f"meter {self.description}", daemon=True)
        self._thread.start()
        if not self._first.wait(FIRST_SAMPLE_TIMEOUT_S) or self._error is not None:
            error = self._error
            self.stop(check=False)
            if error is not None:
                raise error
            raise MeterError(f"{self.description} gave no reading within "
                             f"{FIRST_SAMPLE_TIMEOUT_S:g} s")

    def _thread_main(self, interval: float):
        try:
            self._run(interval, self._stop)
        except Exception as error:  # noqa: BLE001 (handed to the caller by start or stop)
            self._error = error if isinstance(error, MeterError) else MeterError(
                f"{self.description}: reading failed: {error}")
            self._first.set()

    def stop(self, check: bool = True):
        """Stop sampling (after one last sample).

        Raises
        ------
        MeterError
            If a reading failed while sampling (unless ``check`` is false).
        """
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        if self._thread.is_alive():
            self._interrupt()
            self._thread.join(timeout=5.0)
        self._thread = None
        if check and self._error is not None:
            raise self._error

    @contextlib.contextmanager
    def sampling(self, rate_hz: float | None = None):
        """Context manager: sample while the block runs. ``with meter.sampling(20): work()``."""
        self.start(rate_hz)
        try:
            yield self
        except BaseException:
            self.stop(check=False)  # the block's own error is the one to report
            raise
        self.stop()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop(check=exc_info[0] is None)

    def idle_baseline(self, seconds: float, rate_hz: float | None = None) -> float:
        """Sample for ``seconds`` while nothing else runs and keep the mean power as
        :attr:`baseline_watts`; returns it."""
        with self.sampling(rate_hz):
            time.sleep(seconds)
        self.baseline_watts = self.mean_watts
        return self.baseline_watts

    # Results -----------------------------------------------------------------------------------

    def _require_samples(self):
        if not self.samples:
            raise MeterError(f"{self.description} has no samples yet; sample a run first "
                             f"(`with meter.sampling(): ...`)")

    @property
    def duration(self) -> float:
        """Seconds from the first to the last sample."""
        self._require_samples()
        return self.samples[-1].time - self.samples[0].time

    @property
    def joules(self) -> float:
        """Energy over the samples, joules (idle power included)."""
        self._require_samples()
        return self.samples[-1].joules

    @property
    def mean_watts(self) -> float:
        """Time-weighted mean power over the samples (the single reading if only one)."""
        self._require_samples()
        duration = self.duration
        return self.joules / duration if duration > 0 else self.samples[-1].watts

    def _require_baseline(self) -> float:
        if self.baseline_watts is None:
            raise MeterError(f"{self.description} has no idle baseline; call "
                             f"idle_baseline(seconds) while the system is idle first")
        return self.baseline_watts

    @property
    def dynamic_watts(self) -> float:
        """:attr:`mean_watts` minus the idle baseline."""
        return self.mean_watts - self._require_baseline()

    @property
    def dynamic_joules(self) -> float:
        """:attr:`joules` minus the idle baseline's energy over the same duration."""
        return self.joules - self._require_baseline() * self.duration

    def statistics(self) -> dict:
        """Sample count, achieved rate and spread of the power readings, for reports."""
        self._require_samples()
        watts = [sample.watts for sample in self.samples if not math.isnan(sample.watts)]
        duration = self.duration
        return {"samples": len(self.samples),
                "rate_hz": (len(self.samples) - 1) / duration if duration > 0 else 0.0,
                "min_watts": min(watts, default=math.nan),
                "max_watts": max(watts, default=math.nan)}

