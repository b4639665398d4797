"""Linux hwmon power sensors, INA219/INA226 on I2C included (kernel driver ``ina2xx``).

A hwmon device is a folder ``/sys/class/hwmon/hwmonN`` with a ``name`` file and one file per
reading (the kernel's ``Documentation/hwmon/sysfs-interface``): ``powerK_input`` in microwatts
(some drivers offer only ``powerK_average``), ``currK_input`` in milliamperes and ``inK_input``
in millivolts. A channel with a power file is read directly; otherwise power is current x
voltage of the same channel (the ``ina2xx`` driver names the bus voltage ``in1`` and the
current ``curr1``, so channel 1 is the supply that the shunt measures).
"""

from __future__ import annotations

from pathlib import Path

from tern_fpga.host.meters.base import Meter, MeterError

__all__ = ["HWMON_ROOT", "HwmonMeter", "find_hwmon", "resolve_hwmon"]

HWMON_ROOT = Path("/sys/class/hwmon")
MAX_CHANNEL = 16  # channels searched for power readings


def _read_number(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except OSError as error:
        raise MeterError(f"cannot read {path}: {error.strerror or error}") from None
    except ValueError:
        raise MeterError(f"{path} does not hold an integer reading") from None


def _power_files(device: Path, channel: int) -> tuple[Path, ...] | None:
    """The file(s) giving channel ``channel``'s power: ``(power,)`` or ``(current, voltage)``."""
    for name in (f"power{channel}_input", f"power{channel}_average"):
        if (device / name).is_file():
            return (device / name,)
    current, voltage = device / f"curr{channel}_input", device / f"in{channel}_input"
    if current.is_file() and voltage.is_file():
        return current, voltage
    return None


def _device_name(device: Path) -> str:
    try:
        return (device / "name").read_text().strip()
    except OSError:
        return "?"


def find_hwmon(root: Path | str = HWMON_ROOT) -> list[tuple[Path, str, list[int]]]:
    """Every hwmon device under ``root`` with power readings: ``(folder, name, channels)``."""
    root = Path(root)
    found = []
    for device in sorted(root.glob("hwmon*"), key=lambda path: (len(path.name), path.name)):
        channels = [channel for channel in range(1, MAX_CHANNEL + 1)
                    if _power_files(device, channel)]
        if channels:
            found.append((device, _device_name(device), channels))
    return found


def resolve_hwmon(location: str, root: Path | str = HWMON_ROOT) -> Path:
    """A hwmon folder from a path (``/sys/class/hwmon/hwmon3``) or a device name (``ina219``,
    the first device of that name), or the first device with power readings if empty.

    Raises
    ------
    MeterError
        If nothing matches.
    """
    if location.startswith(("/", ".")):
        return Path(location)
    for device, name, _ in find_hwmon(root):
        if not location or name == location:
            return device
    wanted = f"named {location!r} " if location else ""
    raise MeterError(f"no hwmon device {wanted}with power readings under {root}; "
                     f"list meters with `tern meters`")


class HwmonMeter(Meter):
    """Power of one channel of a hwmon device.

    Parameters
    ----------
    device : str or os.PathLike
        The device folder, e.g. ``/sys/class/hwmon/hwmon3``.
    channel : int or None
        The reading's index (``power1_input``: 1); the device's first channel with a power
        reading if ``None``.

    Raises
    ------
    MeterError
        If the folder does not exist or has no power (or current and voltage) reading for the
        channel.
    """

    def __init__(self, device, channel: int | None = None):
        device = Path(device)
        if not device.is_dir():
            raise MeterError(f"no hwmon device at {device}; list meters with `tern meters`")
        if channel is None:
            channel = next((number for number in range(1, MAX_CHANNEL + 1)
                            if _power_files(device, number)), 1)
        files = _power_files(device, channel)
        if files is None:
            raise MeterError(
                f"hwmon device {device} ({_device_name(device)}) has no power reading on "
                f"channel {channel} (power{channel}_input, or curr{channel}_input with "
                f"in{channel}_input); list meters with `tern meters`")
        self.device, self.channel, self._files = device, channel, files
        super().__init__(f"{device.name} {_device_name(device)} channel {channel}")

    def read_watts(self) -> float:
        if len(self._files) == 1:
            return _read_number(self._files[0]) * 1e-6  # microwatts
        current, voltage = self._files
        return _read_number(current) * _read_number(voltage) * 1e-6  # mA x mV
