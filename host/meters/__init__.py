"""Power meters: sample watts during a run and turn them into joules per token.

Open one with :func:`open_meter` (``"hwmon:ina219"``, ``"um25c:/dev/rfcomm0"``,
``"nvidia-smi:0"``, ``"rapl"``; see :mod:`tern_fpga.host.meters.spec`), list the ones on this
machine with :func:`find_meters` (``tern meters``), and measure a generation with
:func:`measure_generation`. Every backend reads from a path or a command, so the tests run them
against simulated devices. See ``docs/measurement.md``.
"""

from tern_fpga.host.meters.base import Meter, MeterError, Sample
from tern_fpga.host.meters.generation import GenerationMeasurement, measure_generation
from tern_fpga.host.meters.hwmon import HwmonMeter
from tern_fpga.host.meters.nvidia import NvidiaSmiMeter
from tern_fpga.host.meters.rapl import RaplMeter
from tern_fpga.host.meters.spec import MeterInfo, find_meters, open_meter
from tern_fpga.host.meters.um import UmMeter

__all__ = [
    "GenerationMeasurement", "HwmonMeter", "Meter", "MeterError", "MeterInfo",
    "NvidiaSmiMeter", "RaplMeter", "Sample", "UmMeter", "find_meters", "measure_generation",
    "open_meter",
]
