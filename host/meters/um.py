"""RDTech UM24C / UM25C / UM34C USB power meters over Bluetooth serial (SPP, ``/dev/rfcommN``).

The protocol is not published by the maker; this follows the public descriptions in sigrok's
``rdtech-um`` driver (libsigrok ``src/hardware/rdtech-um/protocol.c``, ``protocol.h``) and the
``rd-usb`` project (``interfaces/um.py``); see ``docs/measurement.md``. The host sends the one
byte ``0xF0``; the meter answers a 130-byte frame, big-endian:

=======  =====  ==========================================================================
offset   bytes  field
=======  =====  ==========================================================================
0        2      model id: UM24C ``0x0963``, UM25C ``0x09C9``, UM34C ``0x0D4C``
2        2      bus voltage: 10 mV units (UM25C: 1 mV)
4        2      current: 1 mA units (UM25C: 0.1 mA)
6        4      power, mW
10       2      temperature, degrees Celsius
96, 98   2, 2   D+ and D- voltage, 10 mV units
128      2      UM24C, UM25C: end marker ``0xFFF1``; UM34C: byte 129 is the XOR of the bytes
                at :data:`UM34C_CHECKSUM_POSITIONS`
=======  =====  ==========================================================================

The serial link runs at 9600 baud. A meter answers about ten polls a second.
"""

from __future__ import annotations

import dataclasses
import struct

import serial

from tern_fpga.host.meters.base import Meter, MeterError

__all__ = ["FRAME_LENGTH", "MODELS", "POLL", "UmMeter", "UmReading", "encode_frame",
           "parse_frame"]

POLL = 0xF0
FRAME_LENGTH = 130
END_MARKER = 0xFFF1
UM34C_CHECKSUM_POSITIONS = (1, 3, 7, 9, 15, 17, 19, 23, 31, 39, 41, 45, 49, 53, 55, 57, 59, 63,
                            67, 69, 73, 79, 83, 89, 97, 99, 109, 111, 113, 119, 121, 127)


@dataclasses.dataclass(frozen=True)
class _Model:
    name: str
    volts_per_unit: float
    amps_per_unit: float
    xor_checksum: bool


MODELS = {0x0963: _Model("UM24C", 0.01, 0.001, False),
          0x09C9: _Model("UM25C", 0.001, 0.0001, False),
          0x0D4C: _Model("UM34C", 0.01, 0.001, True)}
_IDS = {model.name: model_id for model_id, model in MODELS.items()}


@dataclasses.dataclass(frozen=True)
class UmReading:
    """One answer of the meter: bus voltage, current, the meter's own power reading, and its
    temperature."""

    model: str
    volts: float
    amps: float
    watts: float
    celsius: int


def _xor(frame: bytes) -> int:
    result = 0
    for position in UM34C_CHECKSUM_POSITIONS:
        result ^= frame[position]
    return result


def parse_frame(frame: bytes) -> UmReading:
    """Decode one 130-byte answer.

    Raises
    ------
    MeterError
        If the frame is short, the model id unknown, or the end marker or checksum wrong.
    """
    if len(frame) != FRAME_LENGTH:
        raise MeterError(f"USB meter answered {len(frame)} bytes, not {FRAME_LENGTH}: is it a "
                         f"UM24C/UM25C/UM34C, paired and switched on?")
    model_id, volts, amps, milliwatts, celsius = struct.unpack_from(">HHHIH", frame)
    model = MODELS.get(model_id)
    if model is None:
        raise MeterError(f"unknown USB meter model id 0x{model_id:04X} (known: "
                         f"{', '.join(f'{m.name} 0x{i:04X}' for i, m in MODELS.items())})")
    if model.xor_checksum:
        if _xor(frame) != frame[-1]:
            raise MeterError(f"{model.name} frame has a bad checksum: 0x{frame[-1]:02X}, "
                             f"expected 0x{_xor(frame):02X}")
    elif struct.unpack_from(">H", frame, FRAME_LENGTH - 2)[0] != END_MARKER:
        raise MeterError(f"{model.name} frame lacks its end marker 0x{END_MARKER:04X}")
    return UmReading(model.name, volts * model.volts_per_unit, amps * model.amps_per_unit,
                     milliwatts * 1e-3, celsius)


def encode_frame(reading: UmReading, template: bytes | None = None) -> bytes:
    """The frame a meter sends for ``reading`` (the inverse of :func:`parse_frame`); bytes
    that hold no decoded field are taken from ``template`` (zeros by default)."""
    model_id = _IDS[reading.model]
    model = MODELS[model_id]
    frame = bytearray(template if template is not None else bytes(FRAME_LENGTH))
    if len(frame) != FRAME_LENGTH:
        raise ValueError(f"template must be {FRAME_LENGTH} bytes, not {len(frame)}")
    struct.pack_into(">HHHIH", frame, 0, model_id, round(reading.volts / model.volts_per_unit),
                     round(reading.amps / model.amps_per_unit), round(reading.watts * 1e3),
                     reading.celsius)
    if model.xor_checksum:
        frame[-1] = _xor(frame)
    else:
        struct.pack_into(">H", frame, FRAME_LENGTH - 2, END_MARKER)
    return bytes(frame)


class UmMeter(Meter):
    """A UM24C, UM25C or UM34C on a serial port.

    Parameters
    ----------
    port : str
        The serial device, e.g. ``/dev/rfcomm0`` (see ``docs/measurement.md`` for binding it).
    model : str or None
        ``"UM24C"``, ``"UM25C"`` or ``"UM34C"`` to insist on one model; any by default.
    timeout : float
        Seconds to wait for an answer.

    Raises
    ------
    MeterError
        If the port cannot be opened, or the model name is unknown.
    """

    default_rate_hz = 5.0

    def __init__(self, port: str, model: str | None = None, timeout: float = 1.0):

        if model is not None and model.upper() not in _IDS:
            raise MeterError(f"unknown USB meter model {model!r}; choose one of "
                             f"{', '.join(sorted(_IDS))}")
        self.port, self.model = port, model and model.upper()
        try:
            self._serial = serial.Serial(port, baudrate=9600, timeout=timeout)
        except (serial.SerialException, OSError) as error:
            raise MeterError(f"cannot open USB meter port {port}: {error}; bind the meter "
                             f"with `rfcomm bind` first (docs/measurement.md)") from None
        super().__init__(f"{self.model or 'UM meter'} on {port}")

    def read(self) -> UmReading:
        """Poll the meter once.

        Raises
        ------
        MeterError
            If it does not answer in time, answers a bad frame, or is another model than asked.
        """

        try:
            self._serial.reset_input_buffer()  # drop the rest of an earlier, broken answer
            self._serial.write(bytes([POLL]))
            frame = self._serial.read(FRAME_LENGTH)
        except (serial.SerialException, OSError) as error:
            raise MeterError(f"USB meter on {self.port}: {error}") from None
        if not frame:
            raise MeterError(f"USB meter on {self.port} did not answer; is it on and paired?")
        reading = parse_frame(frame)
        if self.model and reading.model != self.model:
            raise MeterError(f"the meter on {self.port} is a {reading.model}, not a "
                             f"{self.model}")
        return reading

    def read_watts(self) -> float:
        return self.read().watts

    def close(self):
        self._serial.close()
