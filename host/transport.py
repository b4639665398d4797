"""Byte transports for the host link: any pyserial URL, and a fault injector for tests.

:class:`SerialTransport` opens what ``serial.serial_for_url`` opens: a real port
(``/dev/ttyUSB0``, ``COM3``) or the simulated board (``socket://127.0.0.1:PORT``), so the same
driver code talks to both. :class:`FaultyTransport` wraps another transport and damages bytes
in both directions (bit flips, drops, duplicates) at given rates, from a seed.

A transport has three methods: ``write(data)``, ``read(timeout) -> bytes`` (waits up to
``timeout`` seconds for at least one byte, returns what has arrived, ``b""`` if nothing) and
``close()``.
"""

from __future__ import annotations

import errno
import random
import re
import time

import serial

from tern_fpga.contracts.errors import TernError

__all__ = ["FaultyTransport", "SerialTransport", "TransportError"]

# The line a virtual board sends before it hangs up on a client (sim/rtl/verilator_harness).
VIRTUAL_BOARD_NOTICE = b"tern-virtual-board: "


class TransportError(TernError):
    """The port cannot be opened or the connection broke; the message says what to check."""


def _open_error(url: str, error: Exception) -> TransportError:
    code = getattr(error, "errno", None)
    if code is None:
        found = re.search(r"\[Errno (\d+)\]", str(error))
        code = int(found.group(1)) if found else None
    if url.startswith("socket://"):
        if code == errno.ECONNREFUSED:
            return TransportError(f"nothing listens at {url}: is the virtual board running? "
                                  f"(start it with tern_fpga.sim.rtl.virtual_board.VirtualBoard)")
        return TransportError(f"cannot connect to {url}: {error}")
    if code == errno.ENOENT:
        return TransportError(
            f"serial port {url} does not exist; check that the board is plugged in and which "
            f"port it got (ls /dev/ttyUSB* /dev/ttyACM*), then pass that port")
    if code in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in str(error):
        return TransportError(
            f"serial port {url} is busy: another program has it open (a terminal, another "
            f"tern); close that program and retry")
    if code == errno.EACCES:
        return TransportError(
            f"no permission to open {url}; add yourself to the dialout group "
            f"(sudo usermod -aG dialout $USER) and log in again")
    return TransportError(f"cannot open serial port {url}: {error}")


class SerialTransport:
    """A pyserial port or URL.

    Parameters
    ----------
    url : str
        A device (``/dev/ttyUSB0``) or a pyserial URL (``socket://127.0.0.1:5555``).
    baud : int
        Line rate of a real port (a socket ignores it).

    Raises
    ------
    TransportError
        If the port does not exist, is busy, is not ours to open, or nothing listens there.
    """

    def __init__(self, url: str, *, baud: int = 3_000_000):

        self.url = url
        self._recent = b""     # the last bytes read, for a virtual board's parting words
        try:
            self._port = serial.serial_for_url(url, baudrate=baud, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as error:
            raise _open_error(url, error) from None

    def write(self, data: bytes) -> None:

        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as error:
            raise self._gone(f"writing to {self.url} failed ({error})") from None

    def read(self, timeout: float) -> bytes:

        try:
            self._port.timeout = max(timeout, 0)
            first = self._port.read(1)
            if not first:
                return b""
            self._port.timeout = 0
            data = first + self._port.read(1 << 16)
        except (serial.SerialException, OSError) as error:
            raise self._gone(f"reading from {self.url} failed ({error})") from None
        self._recent = (self._recent + data)[-512:]
        return data

    def _gone(self, what: str) -> TransportError:
        """The error for a connection that broke: the virtual board's reason if it gave one."""
        if VIRTUAL_BOARD_NOTICE in self._recent:
            said = self._recent.rpartition(VIRTUAL_BOARD_NOTICE)[2].split(b"\n")[0]
            return TransportError(f"the virtual board at {self.url} hung up: "
                                  f"{said.decode('ascii', 'replace')}")
        return TransportError(f"{what}; the cable or the virtual board went away")

    def close(self) -> None:
        self._port.close()


class FaultyTransport:
    """Damages the bytes that pass through ``inner``, in both directions, reproducibly.

    Each byte is, independently, dropped with probability ``drop``, sent twice with
    probability ``duplicate``, and has one random bit flipped with probability ``flip``. Each
    read and write stalls for ``stall_seconds`` with probability ``stall`` (a host that is
    descheduled, a USB hub that hiccups).

    Members
    -------
    faults : dict
        How many bytes were flipped, dropped and duplicated, and how many transfers stalled,
        so far.
    """

    def __init__(self, inner, *, flip: float = 0.0, drop: float = 0.0, duplicate: float = 0.0,
                 stall: float = 0.0, stall_seconds: float = 0.1, seed: int = 0):
        for name, rate in (("flip", flip), ("drop", drop), ("duplicate", duplicate),
                           ("stall", stall)):
            if not 0 <= rate < 1:
                raise ValueError(f"{name} rate must be in [0, 1), not {rate!r}")
        if not stall_seconds >= 0:
            raise ValueError(f"stall_seconds must be at least 0, not {stall_seconds!r}")
        self.inner = inner
        self._rates = {"flip": flip, "drop": drop, "duplicate": duplicate, "stall": stall}
        self._stall_seconds = stall_seconds
        self._random = random.Random(seed)
        self.faults = {"flip": 0, "drop": 0, "duplicate": 0, "stall": 0}

    def _maybe_stall(self) -> None:
        if self._rates["stall"] and self._random.random() < self._rates["stall"]:
            self.faults["stall"] += 1
            time.sleep(self._stall_seconds)

    def _damage(self, data: bytes) -> bytes:
        out = bytearray()
        chance = self._random.random
        for byte in data:
            if chance() < self._rates["drop"]:
                self.faults["drop"] += 1
                continue
            if chance() < self._rates["flip"]:
                self.faults["flip"] += 1
                byte ^= 1 << self._random.randrange(8)
            out.append(byte)
            if chance() < self._rates["duplicate"]:
                self.faults["duplicate"] += 1
                out.append(byte)
        return bytes(out)

    def write(self, data: bytes) -> None:
        self._maybe_stall()
        self.inner.write(self._damage(data))

    def read(self, timeout: float) -> bytes:
        self._maybe_stall()
        return self._damage(self.inner.read(timeout))

    def close(self) -> None:
        self.inner.close()
