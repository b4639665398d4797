"""``tern bench`` provider: the idle power and achieved sampling rate of every meter found.

Serial ports are left out (a ``/dev/rfcomm*`` may be something other than a meter); name a USB
meter explicitly to measure with it.
"""

from __future__ import annotations

import re
import sys

from tern_fpga.explore.bench import Skipped
from tern_fpga.explore.report import Figure
from tern_fpga.host.meters.base import MeterError
from tern_fpga.host.meters.spec import find_meters, open_meter

__all__ = ["run"]

SOURCE = "tern_fpga.explore.meter_selfcheck"


def _section_name(spec: str) -> str:
    """A figure-name part for a spec: ``hwmon:/sys/class/hwmon/hwmon3#2`` -> ``hwmon3_2``."""
    kind, _, where = spec.partition(":")
    last = where.rstrip("/").rsplit("/", 1)[-1] or kind
    return re.sub(r"[^A-Za-z0-9_\-]+", "_", last if kind != "nvidia-smi" else f"gpu{where}")


def run(quick: bool) -> list[Figure]:
    """Sample each meter for 1 s (``quick``) or 3 s at its default rate.

    Raises
    ------
    tern_fpga.explore.bench.Skipped
        If no meter is found.
    """

    seconds = 1.0 if quick else 3.0
    meters = [info for info in find_meters() if not info.spec.startswith("um:")]
    if not meters:
        raise Skipped("no power meter on this machine (no hwmon power sensor, no readable RAPL "
                      "counter, no nvidia-smi); see docs/measurement.md")
    figures, failures = [], []
    for info in meters:
        name = f"meters.{_section_name(info.spec)}"
        try:
            meter = open_meter(info.spec)
            try:
                watts = meter.idle_baseline(seconds)
                rate = meter.statistics()["rate_hz"]
            finally:
                meter.close()
        except MeterError as error:
            failures.append(f"{info.spec}: {error}")
            continue
        notes = f"{info.spec} ({info.description}); mean over {seconds:g} s with the bench idle"
        figures += [Figure(f"{name}.idle_watts", watts, "W", "measured", SOURCE, notes),
                    Figure(f"{name}.sample_rate_hz", rate, "Hz", "measured",
                           SOURCE, f"achieved rate at the meter's default; {info.spec}")]
    if failures and not figures:
        raise MeterError("; ".join(failures))
    for failure in failures:
        print(f"meters: skipped {failure}", file=sys.stderr)
    return figures
