"""CPU package energy from RAPL through Linux's powercap interface.

``/sys/class/powercap/intel-rapl:0/energy_uj`` is a cumulative energy counter in microjoules of
the CPU package (Intel; AMD Zen processors appear under the same name on kernels with AMD RAPL
support). It wraps to zero after ``max_energy_range_uj``. Since Linux 5.10 the counter is
readable by root only (a side-channel fix), so an ordinary user usually gets "permission
denied": the error says how to allow reading.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from tern_fpga.host.meters.base import Meter, MeterError, Sample

__all__ = ["POWERCAP_ROOT", "RaplMeter", "find_rapl"]

POWERCAP_ROOT = Path("/sys/class/powercap")
DEFAULT_DOMAIN = POWERCAP_ROOT / "intel-rapl:0"


def find_rapl(root: Path | str = POWERCAP_ROOT) -> list[tuple[Path, str]]:
    """Top-level RAPL domains under ``root`` (``intel-rapl:N``, not sub-zones) with their
    names (``package-0``)."""
    found = []
    for domain in sorted(Path(root).glob("intel-rapl:*")):
        if domain.name.count(":") == 1 and (domain / "energy_uj").exists():
            try:
                name = (domain / "name").read_text().strip()
            except OSError:
                name = "?"
            found.append((domain, name))
    return found


class RaplMeter(Meter):
    """Energy of one RAPL domain; power is the counter's increase over each interval.

    Parameters
    ----------
    domain : str or os.PathLike
        The powercap folder, ``/sys/class/powercap/intel-rapl:0`` by default.

    Raises
    ------
    MeterError
        If the folder has no ``energy_uj``, or it cannot be read (the message says how to make
        it readable).
    """

    def __init__(self, domain=DEFAULT_DOMAIN):
        domain = Path(domain)
        self.domain = domain
        self._energy = domain / "energy_uj"
        if not self._energy.exists():
            raise MeterError(f"no RAPL energy counter at {self._energy} (needs an Intel or AMD "
                             f"CPU and the intel_rapl driver); list meters with `tern meters`")
        self._range = self._read(domain / "max_energy_range_uj")
        self._counter = self._read(self._energy)
        try:
            name = (domain / "name").read_text().strip()
        except OSError:
            name = "?"
        super().__init__(f"RAPL {domain.name} {name}")

    def _read(self, path: Path) -> int:
        try:
            return int(path.read_text().strip())
        except PermissionError:
            raise MeterError(
                f"{path} is readable by root only (Linux restricts RAPL since 5.10); run as "
                f"root or allow it with `sudo chmod a+r {path}`") from None
        except OSError as error:
            raise MeterError(f"cannot read {path}: {error.strerror or error}") from None
        except ValueError:
            raise MeterError(f"{path} does not hold an integer") from None

    def _advance(self) -> float:
        """Joules since the previous counter reading, across at most one wrap-around."""
        counter = self._read(self._energy)
        delta = counter - self._counter
        if delta < 0:
            delta += self._range
        self._counter = counter
        return delta * 1e-6

    def read_watts(self) -> float:
        """Mean power over a short (50 ms) interval."""
        start = time.monotonic()
        self._advance()
        time.sleep(0.05)
        return self._advance() / (time.monotonic() - start)

    def _sample(self, previous: Sample | None) -> Sample:
        joules = self._advance()
        now = time.monotonic()
        if previous is None:
            return Sample(now, math.nan, 0.0)
        return Sample(now, joules / (now - previous.time), previous.joules + joules)
