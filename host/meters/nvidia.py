"""NVIDIA GPU board power from ``nvidia-smi``.

While sampling, one ``nvidia-smi --query-gpu=power.draw --format=csv,noheader,nounits -i N
-lms MS`` process prints one reading (watts) per line every ``MS`` milliseconds; each line is a
sample timed on arrival. On Ampere (except GA100) and newer GPUs, Hopper's H100/H200 included,
the driver reports power averaged over one second (NVML's ``nvmlDeviceGetPowerUsage``), so runs
and idle baselines should last several seconds; pass ``field="power.draw.instant"`` where the
driver offers it.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

from tern_fpga.host.meters.base import Meter, MeterError, Sample

__all__ = ["NvidiaSmiMeter"]


class NvidiaSmiMeter(Meter):
    """Power of one GPU as ``nvidia-smi`` reports it.

    Parameters
    ----------
    index : int
        The GPU's index (``nvidia-smi -L``).
    command : str
        The ``nvidia-smi`` program (looked up on ``PATH``).
    field : str
        The query field, ``power.draw`` by default.

    Raises
    ------
    MeterError
        If the program is not found.
    """

    def __init__(self, index: int = 0, command: str = "nvidia-smi", field: str = "power.draw"):
        executable = shutil.which(command)
        if executable is None:
            raise MeterError(f"{command} not found on PATH: no NVIDIA driver here; list meters "
                             f"with `tern meters`")
        self.index, self.field, self._executable = index, field, executable
        self._process: subprocess.Popen | None = None
        super().__init__(f"GPU {index} {field} (nvidia-smi)")

    def _arguments(self, *extra: str) -> list[str]:
        return [self._executable, f"--query-gpu={self.field}", "--format=csv,noheader,nounits",
                "-i", str(self.index), *extra]

    def _parse(self, line: str) -> float:
        text = line.strip()
        try:
            return float(text)
        except ValueError:
            raise MeterError(f"GPU {self.index} gives no {self.field} reading: nvidia-smi "
                             f"printed {text!r}") from None

    def read_watts(self) -> float:
        try:
            result = subprocess.run(self._arguments(), capture_output=True, text=True,
                                    timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise MeterError(f"nvidia-smi failed: {error}") from None
        if result.returncode != 0:
            raise MeterError(f"nvidia-smi -i {self.index} failed: "
                             f"{(result.stderr or result.stdout).strip()}")
        return self._parse(result.stdout.splitlines()[0] if result.stdout else "")

    def _run(self, interval: float, stop: threading.Event):
        milliseconds = max(1, round(interval * 1000))
        process = subprocess.Popen(self._arguments("-lms", str(milliseconds)),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   bufsize=1)
        self._process = process
        previous = None
        try:
            for line in process.stdout:
                previous = Sample.following(previous, time.monotonic(), self._parse(line))
                self._append(previous)
                if stop.is_set():  # this line came after the stop: the run is covered
                    return
            if not stop.is_set():
                raise MeterError(f"nvidia-smi -i {self.index} stopped: "
                                 f"{process.stderr.read().strip() or 'no output'}")
        finally:
            self._interrupt()

    def _interrupt(self):
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
