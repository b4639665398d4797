"""Reliable request/reply over a byte transport: sequence numbers, timeouts, retransmission.

:class:`Link` sends one command frame at a time and waits for the reply with the same sequence
number (stop-and-wait). It sends the frame again when the board answers with a NAK, when a
damaged frame arrives instead of the reply, or when nothing arrives in time; the board executes
a repeated WRITE or RUN only once (see ``docs/host-protocol.md``). Frames that the board sends
by itself (the tokens of a run) are queued for :meth:`Link.notification`.
"""

from __future__ import annotations

import collections
import random
import time

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.protocol import RESPONSE, Code, Frame, FrameDecoder, encode_frame

__all__ = ["Link", "LinkGaveUpError", "LinkTimeoutError"]

BITS_PER_BYTE = 10  # 8N1


class LinkTimeoutError(TernError):
    """Nothing came back from the board at all."""


class LinkGaveUpError(TernError):
    """The board answered, but never with a good reply, in all the attempts."""


class Link:
    """Stop-and-wait command link.

    Parameters
    ----------
    transport
        A :mod:`tern_fpga.host.transport` transport.
    timeout : float
        Seconds to wait for a reply beyond the time its bytes take on the line.
    retries : int
        Retransmissions before giving up.
    baud : int
        Line rate, to add each frame's transmission time to the timeout.
    name : str
        The port, named in error messages.

    Members
    -------
    stats : collections.Counter
        ``retransmissions``, ``naks``, ``damaged`` (frames that arrived with a bad CRC),
        ``timeouts``, ``stale`` (replies to an earlier attempt, dropped), ``bytes_sent``.
    """

    def __init__(self, transport, *, timeout: float = 1.0, retries: int = 8,
                 baud: int = 3_000_000, name: str = "the board"):
        if not (timeout > 0 and isinstance(retries, int) and retries >= 0):
            raise ValueError(f"timeout must be positive and retries a non-negative integer, "
                             f"not timeout={timeout!r} retries={retries!r}")
        self.transport = transport
        self.timeout, self.retries, self.baud, self.name = timeout, retries, baud, name
        # A random start, so that a new session's first WRITE never repeats the last session's.
        self._seq = random.randrange(256)
        self._decoder = FrameDecoder()
        self._notifications: collections.deque[Frame] = collections.deque()
        self.stats = collections.Counter()

    @property
    def seq(self) -> int:
        """Sequence number of the last command sent."""
        return self._seq

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def line_seconds(self, count: int) -> float:
        """Time ``count`` bytes take on the line."""
        return count * BITS_PER_BYTE / self.baud

    def _receive(self, timeout: float) -> list[Frame]:
        frames = self._decoder.feed(self.transport.read(timeout))
        if self._decoder.damaged:
            self.stats["damaged"] += self._decoder.damaged
        return frames

    def transact(self, code: Code, payload: bytes = b"", *, what: str,
                 reply_bytes: int = 16, extra_seconds: float = 0.0) -> Frame:
        """Send a command and return its reply (whatever its status).

        Parameters
        ----------
        code, payload
            The command.
        what : str
            Describes the command in error messages ("WRITE of 256 words to WEIGHTS").
        reply_bytes : int
            Expected reply size, for the timeout.
        extra_seconds : float
            Time the board needs to execute the command, added to the timeout.

        Raises
        ------
        LinkTimeoutError
            If no frame at all came back in any attempt.
        LinkGaveUpError
            If frames came back but never the reply, after ``retries`` retransmissions.
        """
        seq = self.next_seq()
        frame = encode_frame(seq, code, payload)
        wait = self.timeout + extra_seconds + 2 * self.line_seconds(len(frame) + reply_bytes)
        heard, problem = False, "no answer"
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retransmissions"] += 1
            self.transport.write(frame)
            self.stats["bytes_sent"] += len(frame)
            reply, event = self._await_reply(seq, code, wait)
            if reply is not None:
                return reply
            heard = heard or event != "timeout"
            problem = {"nak": "the board reported a damaged frame (NAK)",
                       "damaged": "replies arrived damaged",
                       "timeout": f"no reply within {wait:.2f} s"}[event]
        attempts = self.retries + 1
        if not heard:
            raise LinkTimeoutError(
                f"no answer from {self.name} to {what} in {attempts} attempts of {wait:.2f} s; "
                f"check the cable and the port ({self.name}), that the baud rate ({self.baud}) "
                f"matches the bitstream's, and that the board runs a tern bitstream "
                f"(`tern flash`)")
        raise LinkGaveUpError(
            f"the link to {self.name} gave up on {what} after {attempts} attempts (last: "
            f"{problem}; {self.stats['naks']} NAKs and {self.stats['damaged']} damaged frames "
            f"so far); the line is noisy or the baud rate is off: try a lower baud rate or "
            f"another cable")

    def _await_reply(self, seq: int, code: int, wait: float) -> tuple[Frame | None, str]:
        """The reply, or ``None`` and why the frame should be sent again."""
        deadline = time.monotonic() + wait
        while True:
            # Read at least once more after the deadline: this process may have slept past it
            # while the reply was waiting in the buffer.
            remaining = deadline - time.monotonic()
            self._decoder.damaged = 0
            for frame in self._receive(max(remaining, 0)):
                if frame.code == Code.NAK:
                    self.stats["naks"] += 1
                    if frame.seq == seq:
                        return None, "nak"
                    # About another frame: garbage a dying host left on the line, or a frame
                    # whose SEQ itself was damaged (its retransmission then waits for the
                    # timeout).
                    self.stats["other_naks"] += 1
                    continue
                if frame.code == Code.TOKEN:
                    self._notifications.append(frame)
                elif frame.seq == seq and frame.code == code | RESPONSE:
                    return frame, "reply"
                else:
                    self.stats["stale"] += 1
            if self._decoder.damaged:
                return None, "damaged"
            if remaining <= 0:
                self.stats["timeouts"] += 1
                return None, "timeout"

    def notification(self, timeout: float) -> Frame | None:
        """The next frame the board sent by itself, or ``None`` after ``timeout`` seconds or
        when a damaged frame arrived (which may have been one: ask the board)."""
        deadline = time.monotonic() + timeout
        while not self._notifications:
            remaining = deadline - time.monotonic()
            self._decoder.damaged = 0
            for frame in self._receive(max(remaining, 0)):
                if frame.code == Code.TOKEN:
                    self._notifications.append(frame)
                else:
                    self.stats["stale"] += 1
            if not self._notifications and (self._decoder.damaged or remaining <= 0):
                return None
        return self._notifications.popleft()

    def close(self) -> None:
        self.transport.close()
