"""Meter specifications (``KIND:WHERE`` strings) and the search for meters on this machine.

=====================================  ====================================================
spec                                   meter
=====================================  ====================================================
``hwmon:/sys/class/hwmon/hwmon3``      hwmon device by folder (its first power channel)
``hwmon:/sys/class/hwmon/hwmon3#2``    ... channel 2 (e.g. an INA3221's second input)
``hwmon:ina219``                       the first hwmon device named ``ina219``
``hwmon``                              the first hwmon device with a power reading
``um25c:/dev/rfcomm0``                 RDTech UM25C on a serial port (also ``um24c``,
                                       ``um34c``, or ``um`` for any of the three)
``nvidia-smi:0``                       GPU 0 through ``nvidia-smi`` (``nvidia-smi``: GPU 0)
``rapl:/sys/class/powercap/intel-rapl:0``  a RAPL domain (``rapl``: package 0)
=====================================  ====================================================
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

from tern_fpga.host.meters.base import Meter, MeterError
from tern_fpga.host.meters.hwmon import HwmonMeter, find_hwmon, resolve_hwmon
from tern_fpga.host.meters.nvidia import NvidiaSmiMeter
from tern_fpga.host.meters.rapl import DEFAULT_DOMAIN, RaplMeter, find_rapl
from tern_fpga.host.meters.um import UmMeter

__all__ = ["MeterInfo", "find_meters", "open_meter"]

SPEC_SYNTAX = ("hwmon[:PATH|NAME][#CHANNEL], um24c|um25c|um34c|um:PORT, nvidia-smi[:INDEX], "
               "rapl[:PATH]")


def _hwmon(where: str, sysfs: Path) -> Meter:
    location, _, channel = where.partition("#")
    try:
        channel_number = int(channel) if channel else None
    except ValueError:
        raise MeterError(f"hwmon channel must be a number, not {channel!r}") from None
    return HwmonMeter(resolve_hwmon(location, sysfs / "class/hwmon"), channel_number)


def _nvidia(where: str, sysfs: Path) -> Meter:
    try:
        return NvidiaSmiMeter(int(where) if where else 0)
    except ValueError:
        raise MeterError(f"nvidia-smi meter wants a GPU index, like nvidia-smi:0, not "
                         f"{where!r}") from None


def _um(model: str | None):
    def opener(where: str, sysfs: Path) -> Meter:
        if not where:
            raise MeterError("a USB meter needs its serial port, like um25c:/dev/rfcomm0")
        return UmMeter(where, model)
    return opener


def _rapl(where: str, sysfs: Path) -> Meter:
    if where:
        return RaplMeter(where)
    return RaplMeter(sysfs / DEFAULT_DOMAIN.relative_to("/sys"))


_OPENERS = {"hwmon": _hwmon, "nvidia-smi": _nvidia, "rapl": _rapl, "um": _um(None),
            "um24c": _um("UM24C"), "um25c": _um("UM25C"), "um34c": _um("UM34C")}


def open_meter(spec: str, sysfs: str | Path = "/sys") -> Meter:
    """The meter a spec names (see the module's table).

    Parameters
    ----------
    spec : str
        ``KIND`` or ``KIND:WHERE``.
    sysfs : str or os.PathLike
        Where sysfs is mounted; only tests and containers change it.

    Raises
    ------
    MeterError
        If the kind is unknown or the meter is absent or unreadable.
    """
    kind, _, where = spec.partition(":")
    opener = _OPENERS.get(kind.lower())
    if opener is None:
        raise MeterError(f"unknown meter kind {kind!r} in {spec!r}; a meter spec is one of "
                         f"{SPEC_SYNTAX}")
    return opener(where, Path(sysfs))


@dataclasses.dataclass(frozen=True)
class MeterInfo:
    """A meter found on this machine: the ``spec`` that opens it and what it is."""

    spec: str
    description: str


def _nvidia_gpus(command: str) -> list[MeterInfo]:
    if shutil.which(command) is None:
        return []
    try:
        result = subprocess.run([command, "-L"], capture_output=True, text=True, timeout=10,
                                check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in result.stdout.splitlines():
        # "GPU 0: NVIDIA H200 (UUID: GPU-...)"
        head, _, name = line.partition(": ")
        if head.startswith("GPU ") and head[4:].isdigit():
            found.append(MeterInfo(f"nvidia-smi:{head[4:]}",
                                   f"{name.split(' (UUID')[0]} board power (nvidia-smi)"))
    return found


def find_meters(sysfs: str | Path = "/sys", dev: str | Path = "/dev",
                nvidia_command: str = "nvidia-smi") -> list[MeterInfo]:
    """Meters present on this machine: hwmon devices with power readings, RAPL domains,
    GPUs that ``nvidia-smi -L`` lists, and Bluetooth serial ports (``/dev/rfcomm*``) where a
    USB meter may be bound (not opened: a port may be something else)."""
    sysfs = Path(sysfs)
    found = [MeterInfo(f"hwmon:{device}" + (f"#{channel}" if channel != 1 else ""),
                       f"{name} power channel {channel}")
             for device, name, channels in find_hwmon(sysfs / "class/hwmon")
             for channel in channels]
    found += [MeterInfo(f"rapl:{domain}", f"RAPL {name} energy counter")
              for domain, name in find_rapl(sysfs / "class/powercap")]
    found += _nvidia_gpus(nvidia_command)
    found += [MeterInfo(f"um:{port}", "Bluetooth serial port: a UM24C/UM25C/UM34C if one is "
                                      "bound here")
              for port in sorted(Path(dev).glob("rfcomm*"))]
    return found
