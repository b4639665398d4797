"""The board driver: load a compiled model onto a tern board and run it.

::

    with Board("/dev/ttyUSB0") as board:          # or a VirtualBoard's socket:// URL
        board.load_export(read_export("model.tern"))
        board.reset()
        for token in board.generate(prompt, 100):
            print(token)

:class:`Board` identifies the board when it connects, streams every section of an export into
its memory space in chunks and checks each one with a CRC computed on the chip, and runs the
program one token at a time (feed) or lets the chip feed its own output back (generate), with
tokens streamed as they are produced. Every failure is a
:class:`~tern_fpga.contracts.errors.TernError`
subclass with a message that says what to check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import time
from collections.abc import Iterator
from typing import Self

import numpy as np
from tqdm import tqdm

from tern_fpga.contracts.boards import weights_in_sdram
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.protocol import (
    ABORT_REPLY,
    CRC_REPLY,
    DUPLICATE,
    IDENTIFY_REPLY,
    MAX_FEED_TOKENS,
    MAX_READ_WORDS,
    MAX_WRITE_WORDS,
    MEMORY_HEADER,
    PROTOCOL_VERSION,
    RUN_HEADER,
    STATUS_REPLY,
    TOKEN_NOTIFICATION,
    TOKENS_REPLY,
    TOKENS_REQUEST,
    Code,
    MemorySpace,
    RunMode,
    Status,
    crc32_words,
    space_words,
    table_offsets,
    to_words,
)
from tern_fpga.contracts.sdram_image import (
    PACKING_CODES,
    export_packing,
    packing_register_address,
    sdram_weight_words,
)
from tern_fpga.host.link import Link, LinkTimeoutError
from tern_fpga.host.transport import SerialTransport

__all__ = ["MEMORY_FAULTS", "Board", "BoardError", "BoardIdentity", "BoardStatus", "LoadError",
           "WrongBoardError"]

# Where each export section goes; the tables are built into the bitstream and only checked.
SECTION_SPACES = {
    "program": MemorySpace.PROGRAM,
    "weights": MemorySpace.WEIGHTS,
    "vector_init": MemorySpace.VECTOR,
    "embeddings": MemorySpace.EMBEDDING,
    "constants": MemorySpace.CONSTANTS,
    "sigmoid_table": MemorySpace.TABLES,
    "rsqrt_table": MemorySpace.TABLES,
}
MAX_RUN_COUNT = 0xFFFF
_STATUS_MEANING = {
    Status.BAD_COMMAND: "the board does not know this command (an older bitstream?)",
    Status.BAD_LENGTH: "the frame's length does not match the command",
    Status.BAD_SPACE: "there is no such memory space",
    Status.OUT_OF_RANGE: "the address range is outside the memory (or the tokens asked for "
                         "are not kept any more)",
    Status.BUSY: "the board is running the program; wait until the run ends",
    Status.BAD_ARGUMENT: "an argument is out of range",
}


class BoardError(TernError):
    """The board refused a command; ``status`` is its
    :class:`~tern_fpga.contracts.protocol.Status` code."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class WrongBoardError(TernError):
    """The board runs another protocol version or other accelerator parameters."""


class LoadError(TernError):
    """A section did not read back equal to what was written."""


@dataclasses.dataclass(frozen=True)
class BoardIdentity:
    """What IDENTIFY reports."""

    protocol_version: int
    board_id: int
    build_id: int
    params_hash: int
    max_payload: int
    token_history: int
    clock_hz: int


@dataclasses.dataclass(frozen=True)
class BoardStatus:
    """What STATUS reports; counters count since the board's reset and wrap."""

    core_busy: bool
    running: bool
    cycles: int
    instructions: int
    tokens: int
    bytes_received: int
    frame_errors: int
    crc_errors: int
    uart_errors: int
    duplicates: int
    uptime_cycles: int
    memory_status: int = 0
    """The weight memory's fault code: 0 when it works, :data:`MEMORY_FAULTS` names the
    others."""


# A host word of weights or embeddings in SDRAM (hw/sdram/weight_memory.py): two 16-bit accesses and the
# controller's latency of about 12 cycles, one word at a time; with margin for refreshes.
SDRAM_CYCLES_PER_WORD = 24

# Seconds check_memory gives a weight memory to finish initialising before its fault counts.
MEMORY_INIT_SECONDS = 2.0

MEMORY_FAULTS = {
    1: "its external SDRAM did not finish initialisation (check that the bitstream is for this "
       "board, then power-cycle it; if it persists the SDRAM or its clock is faulty)",
}


def _preset_of(params_hash: int):
    """The preset whose parameters hash to ``params_hash``, or None."""
    return next((params for params in PRESETS.values() if params.hash == params_hash), None)


def _preset_name(params_hash: int) -> str:
    known = _preset_of(params_hash)
    if known is not None:
        return f"preset {known.name!r} (hash 0x{params_hash:016x})"
    return f"unknown parameters (hash 0x{params_hash:016x})"


class Board:
    """A tern board (or a simulated one) behind a serial port.

    Connecting identifies the board and checks its protocol version.

    Parameters
    ----------
    url : str
        Serial port or pyserial URL (``/dev/ttyUSB0``, ``socket://127.0.0.1:PORT``).
    baud : int
        The bitstream's line rate.
    timeout : float
        Seconds to wait for each reply beyond its time on the line.
    retries : int
        Retransmissions of one command before the link gives up.
    transport : optional
        Use this transport instead of opening ``url`` (e.g. a
        :class:`~tern_fpga.host.transport.FaultyTransport`); ``url`` then only names it in messages.
    preloaded : sequence of str
        Export sections that the board's memory already holds from elsewhere (a virtual
        board's SDRAM preload, docs/sdram.md): a load checks them by the chip's CRC first and
        writes them only if they differ.

    Members
    -------
    identity : BoardIdentity
    entry_points : dict or None
        ``{"reset": ..., "step": ...}`` of the loaded export.
    link : tern_fpga.host.link.Link

    Raises
    ------
    tern_fpga.host.transport.TransportError
        If the port cannot be opened.
    tern_fpga.host.link.LinkTimeoutError
        If the board does not answer.
    WrongBoardError
        If it speaks another protocol version.
    """

    def __init__(self, url: str, *, baud: int = 3_000_000, timeout: float = 1.0,
                 retries: int = 8, transport=None, preloaded=()):
        transport = transport if transport is not None else SerialTransport(url, baud=baud)
        self.link = Link(transport, timeout=timeout, retries=retries, baud=baud, name=url)
        self.entry_points: dict | None = None
        self.preloaded = tuple(preloaded)
        unknown = set(self.preloaded) - set(SECTION_SPACES)
        if unknown:
            raise ValueError(f"preloaded names unknown sections {sorted(unknown)}; the sections "
                             f"are {sorted(SECTION_SPACES)}")
        self.closed = False
        try:
            # IDENTIFY first: it also tells the board that a new session starts (the repeat
            # detection compares with the frame executed last).
            self.identity = self.identify()
        except BaseException:
            self.close()
            raise
        if self.identity.protocol_version != PROTOCOL_VERSION:
            self.close()
            raise WrongBoardError(
                f"the board at {url} speaks host protocol version "
                f"{self.identity.protocol_version}, this tern version {PROTOCOL_VERSION}; "
                f"flash a bitstream built by this tern")
        known = _preset_of(self.identity.params_hash)
        self._weights_in_sdram = known is not None and weights_in_sdram(known)

    def close(self) -> None:
        """Close the connection (a generation not yet finished is left to the board)."""
        self.closed = True
        self.link.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    # Commands ------------------------------------------------------------------------------

    def _command(self, code: Code, payload: bytes, what: str, **timing) -> bytes:
        reply = self.link.transact(code, payload, what=what, **timing)
        status = reply.status
        if status != Status.OK:
            name = Status(status).name if status in set(Status) else f"status {status}"
            again = " (a repeated frame)" if reply.payload[0] & DUPLICATE else ""
            raise BoardError(f"the board refused {what}: {name}{again}: "
                             f"{_STATUS_MEANING.get(status, 'unknown status')}", status)
        return reply.payload

    def identify(self) -> BoardIdentity:
        payload = self._command(Code.IDENTIFY, b"", "IDENTIFY")
        fields = IDENTIFY_REPLY.unpack(payload[:IDENTIFY_REPLY.size])
        return BoardIdentity(*fields[1:])

    def status(self) -> BoardStatus:
        payload = self._command(Code.STATUS, b"", "STATUS", reply_bytes=STATUS_REPLY.size)
        _, flags, memory_status, *counters = STATUS_REPLY.unpack(payload)
        return BoardStatus(bool(flags & 1), bool(flags & 2), *counters,
                           memory_status=memory_status & 0xF)

    def check_memory(self, *, wait: float = MEMORY_INIT_SECONDS) -> None:
        """Raise :class:`BoardError` if the board's weight memory reports a fault (an
        external memory that did not initialise): better than loading into it or generating
        garbage tokens from it. An SDRAM initialises in about 200 us after the bitstream
        starts (longer on a virtual board, whose clock runs slower than the host's): a fault
        is asked again for up to ``wait`` seconds before it counts."""
        deadline = time.monotonic() + wait
        while (code := self.status().memory_status) and time.monotonic() < deadline:
            time.sleep(0.05)
        if code:
            raise BoardError(f"the board's weight memory reports fault {code}: "
                             f"{MEMORY_FAULTS.get(code, 'an unknown fault code')}")

    def _memory_time(self, count: int, space: MemorySpace) -> float:
        """The chip's time for ``count`` words of ``space``: a cycle a word in block RAM,
        :data:`SDRAM_CYCLES_PER_WORD` for weights and embeddings in SDRAM."""
        cycles = 1
        if space in (MemorySpace.WEIGHTS, MemorySpace.EMBEDDING) and self._weights_in_sdram:
            cycles = SDRAM_CYCLES_PER_WORD
        return count * cycles / self.identity.clock_hz

    def write_memory(self, space: MemorySpace, address: int, words, *, progress=None) -> None:
        """Write ``uint32`` words from ``address`` (in words) of ``space``, in chunks.

        Raises
        ------
        BoardError
            If the board refuses (out of range, busy).
        """
        words = np.asarray(words, dtype=np.uint32).reshape(-1)
        space = MemorySpace(space)
        for start in range(0, len(words), MAX_WRITE_WORDS):
            chunk = words[start:start + MAX_WRITE_WORDS]
            payload = MEMORY_HEADER.pack(space, address + start, len(chunk)) + to_words(
                chunk).tobytes()
            self._command(Code.WRITE, payload,
                          f"WRITE of {len(chunk)} words to {space.name} at {address + start}",
                          extra_seconds=self._memory_time(len(chunk), space))
            if progress is not None:
                progress.update(4 * len(chunk))

    def read_memory(self, space: MemorySpace, address: int, count: int) -> np.ndarray:
        """``count`` ``uint32`` words from ``address`` of ``space``."""
        space = MemorySpace(space)
        parts = []
        for start in range(0, count, MAX_READ_WORDS):
            size = min(MAX_READ_WORDS, count - start)
            payload = self._command(
                Code.READ, MEMORY_HEADER.pack(space, address + start, size),
                f"READ of {size} words from {space.name} at {address + start}",
                reply_bytes=1 + 4 * size, extra_seconds=self._memory_time(size, space))
            parts.append(np.frombuffer(payload[1:], dtype="<u4"))
        return np.concatenate(parts).astype(np.uint32) if parts else np.zeros(0, np.uint32)

    def memory_crc(self, space: MemorySpace, address: int, count: int) -> int:
        """CRC-32 (as ``zlib.crc32``) of ``count`` words of ``space``, computed on the chip."""
        space = MemorySpace(space)
        payload = self._command(
            Code.CRC, MEMORY_HEADER.pack(space, address, count),
            f"CRC of {count} words of {space.name} at {address}",
            extra_seconds=self._memory_time(count, space))
        return CRC_REPLY.unpack(payload)[1]

    # Loading -------------------------------------------------------------------------------

    def load_export(self, export, *, progress: bool = True) -> int:
        """Load every section of ``export`` (a
        :class:`tern_fpga.contracts.export_format.TernExport`) and
        verify each with the chip's CRC; returns the bytes of the sections loaded.

        Raises
        ------
        WrongBoardError
            If the board was built for other accelerator parameters.
        LoadError
            If a section does not fit its memory, or reads back different twice in a row.
        """

        plan = self._plan(export)
        self.check_memory()
        total = sum(4 * len(words) for *_, words, _ in plan)
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="loading",
                  disable=not progress, leave=False) as bar:
            for name, space, address, words, written in plan:
                self._load_section(name, space, address, words, written, bar)
        self._take_entry_points(export)
        return total

    def holds_export(self, export) -> bool:
        """Whether the board already holds ``export``, by the chip's CRCs (one CRC command a
        section, nothing written): every section but the vector memory's work bank, which
        holds the recurrent state and the buffers and so changes with every run (see
        :meth:`restore_work_bank`). If it does, the export's entry points are taken as
        :meth:`load_export` takes them, so it need not be loaded again.

        Raises
        ------
        WrongBoardError
            If the board was built for other accelerator parameters.
        LoadError
            If a section does not fit its memory.
        BoardError
            If the weight memory reports a fault (:meth:`check_memory`).
        """
        plan = self._plan(export)
        self.check_memory()
        for name, space, address, words, _ in plan:
            if name == "vector_init":
                skipped = self._work_bank_words(export, words)
                address, words = address + skipped, words[skipped:]
            if len(words) and self.memory_crc(space, address, len(words)) != crc32_words(words):
                return False
        self._take_entry_points(export)
        return True

    def restore_work_bank(self, export) -> int:
        """Write the vector memory's work bank as ``export`` has it (the state and buffers a
        fresh load leaves, which the golden model starts from); returns the bytes written."""
        words = to_words(export.sections["vector_init"])
        words = words[:self._work_bank_words(export, words)]
        self.write_memory(MemorySpace.VECTOR, 0, words)
        return 4 * len(words)

    @staticmethod
    def _work_bank_words(export, words) -> int:
        """Words of the vector section that lie in the work bank (int32 elements: one each)."""
        return min(len(words), export.params.work_words)

    def _take_entry_points(self, export) -> None:
        points = np.asarray(export.sections.get("entry_points", []), dtype=np.int64)
        self.entry_points = ({"reset": int(points[0]), "step": int(points[1])}
                             if points.size >= 2 else None)

    def _plan(self, export) -> list:
        if self.identity.params_hash != export.params.hash:
            raise WrongBoardError(
                f"the board runs {_preset_name(self.identity.params_hash)}, but the export was "
                f"compiled for {_preset_name(export.params.hash)}; flash the bitstream for "
                f"preset {export.params.name!r} or re-export the model for the board's preset")
        sizes = space_words(export.params)
        offsets = table_offsets(export.params)
        sections = {name: export.sections.get(name) for name in SECTION_SPACES}
        packing = export_packing(export)
        if self._weights_in_sdram:
            # The SDRAM holds the weights in the export's packing; the packing register is
            # the weights space's last word (contracts/sdram_image.py).
            register = packing_register_address(export.params)
            sizes = {**sizes, MemorySpace.WEIGHTS: register}
            if sections["weights"] is not None:
                sections["weights"] = sdram_weight_words(sections["weights"], packing)
        plan = []
        for name, space in SECTION_SPACES.items():
            if sections[name] is None:
                continue
            words = to_words(sections[name])
            address = offsets.get(name, 0)
            if address + len(words) > sizes[space]:
                raise LoadError(
                    f"section {name!r} has {len(words)} words but the {space.name} memory holds "
                    f"{sizes[space] - address} from word {address}; re-export the model")
            plan.append((name, space, address, words,
                         space != MemorySpace.TABLES and name not in self.preloaded))
        if self._weights_in_sdram:
            plan.insert(0, ("weight packing", MemorySpace.WEIGHTS, register,
                            np.array([PACKING_CODES[packing]], dtype=np.uint32), True))
        return plan

    def _load_section(self, name, space, address, words, written, bar) -> None:
        expected = crc32_words(words)
        for attempt in range(2):
            # The tables are in the bitstream, a preloaded section in the memory already:
            # write them only if they differ.
            if written or attempt:
                self.write_memory(space, address, words, progress=bar)
            if self.memory_crc(space, address, len(words)) == expected:
                if not written and not attempt:
                    bar.update(4 * len(words))
                return
        if space == MemorySpace.TABLES:
            raise LoadError(
                f"the board's {name} differs from the export's and cannot be written: the "
                f"bitstream and the export come from different tern versions; rebuild one")
        raise LoadError(
            f"section {name!r} ({len(words)} words of {space.name}) read back with a different "
            f"CRC twice; the board's memory or the link is faulty")

    # Running -------------------------------------------------------------------------------

    def _entry(self, entry: int | None, which: str) -> int:
        if entry is not None:
            return entry
        if self.entry_points is None:
            raise TernError(f"no {which} entry point: load an export first (load_export) or "
                            f"pass entry=")
        return self.entry_points[which]

    def reset(self, *, entry: int | None = None) -> None:
        """Run the program's reset entry once (clears the recurrent state)."""
        self.feed([0], entry=self._entry(entry, "reset"))

    def run(self, token: int, *, entry: int | None = None) -> int:
        """One step on ``token``; returns the next token."""
        return self.feed([token], entry=entry)

    def feed(self, tokens, *, entry: int | None = None) -> int:
        """Run the step once per token; returns the output of the last step."""
        tokens = [int(t) for t in tokens]
        if not tokens:
            raise ValueError("feed needs at least one token")
        entry = self._entry(entry, "step")
        chunk = min(self.identity.token_history, MAX_FEED_TOKENS)
        last = None
        for start in range(0, len(tokens), chunk):
            part = tokens[start:start + chunk]
            payload = RUN_HEADER.pack(entry, 0, len(part), RunMode.FEED) + struct.pack(
                f"<{len(part)}H", *part)
            for last in self._run(payload, len(part), f"RUN (feed {len(part)} tokens)"):
                pass
        return last

    def generate(self, prompt, count: int, *, entry: int | None = None,
                 step_timeout: float = 30.0) -> Iterator[int]:
        """Feed ``prompt``, then generate ``count`` tokens greedily on the chip; yields each
        token as it arrives. ``step_timeout`` bounds the wait for any one token. A caller that
        stops early (closes the generator, or is interrupted with Ctrl-C) ends the chip's run
        with :meth:`abort`, so that the board takes commands again at once; a generator still
        open when the board is closed leaves the run to the board."""
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise ValueError("generate needs a prompt of at least one token")
        entry = self._entry(entry, "step")
        if len(prompt) > 1:
            self.feed(prompt[:-1], entry=entry)
        token = prompt[-1]
        for start in range(0, count, MAX_RUN_COUNT):
            part = min(MAX_RUN_COUNT, count - start)
            payload = RUN_HEADER.pack(entry, token, part, RunMode.GENERATE)
            with contextlib.closing(self._run(payload, part, f"RUN (generate {part} tokens)",
                                              step_timeout=step_timeout)) as tokens:
                for token in tokens:    # the last one starts the next part
                    yield token

    def _run(self, payload: bytes, count: int, what: str, *,
             step_timeout: float = 30.0) -> Iterator[int]:
        """Start a run and yield its ``count`` tokens in order: from the notifications as they
        come, and from the chip's token history (TOKENS) when one is missing."""
        self._command(Code.RUN, payload, what)
        run_seq = self.link.seq
        following = 0
        try:
            for token in self._follow(run_seq, count, what, step_timeout):
                following += 1
                yield token
        except (GeneratorExit, KeyboardInterrupt):
            # The caller stopped early: end the chip's run rather than leave it BUSY; not
            # through a closed connection (a generator collected after its board was closed).
            if following < count and not self.closed:
                self.abort(timeout=step_timeout)
            raise

    def _follow(self, run_seq: int, count: int, what: str,
                step_timeout: float) -> Iterator[int]:
        """The run's ``count`` tokens in order (see :meth:`_run`)."""
        following, progress_at = 0, time.monotonic()
        poll = max(0.05, self.link.timeout / 2)
        while following < count:
            frame = self.link.notification(poll)
            gap = False
            if frame is not None:
                if frame.seq != run_seq:
                    continue    # from an earlier run
                index, token = TOKEN_NOTIFICATION.unpack(frame.payload)
                if index < following:
                    continue    # already read back with TOKENS
                if index == following:
                    following, progress_at = following + 1, time.monotonic()
                    yield token
                    continue
                gap = True
            # A token is missing (a gap, a damaged frame, or silence): ask the chip for it.
            try:
                tokens, running = self._tokens(following, count - following)
            except BoardError as error:
                if error.status != Status.OUT_OF_RANGE:
                    raise
                if gap:
                    raise BoardError(
                        f"{what}: token {following} was lost: its notification never arrived "
                        f"and the chip's history of {self.identity.token_history} tokens has "
                        f"moved past it; the host read too slowly (run again, or generate "
                        f"fewer tokens per call)", error.status) from None
                # Older than the chip's history, but its notification may only be late (a
                # slow host): keep reading them; the step timeout still bounds the wait.
                tokens, running = [], True
            for token in tokens:
                following, progress_at = following + 1, time.monotonic()
                yield token
            if following < count and not running and not tokens:
                raise BoardError(f"{what} stopped after {following} of {count} tokens")
            if time.monotonic() - progress_at > step_timeout:
                raise LinkTimeoutError(
                    f"{what}: no token for {step_timeout:.0f} s after token {following}; the "
                    f"core may be stuck (see board.status())")

    def abort(self, *, timeout: float = 30.0) -> int | None:
        """End the board's run at the next token boundary (ABORT) and wait until it has ended;
        the memories and the tokens of the run stay as they are. Returns the steps the run
        finished, or ``None`` if no run was in progress.

        Raises
        ------
        LinkTimeoutError
            If the run has not ended after ``timeout`` seconds (the core is stuck).
        """
        deadline = time.monotonic() + timeout
        stopping = False
        while True:
            payload = self._command(Code.ABORT, b"", "ABORT")
            _, running, produced = ABORT_REPLY.unpack(payload)
            if not running:
                return produced if stopping else None
            stopping = True
            if time.monotonic() > deadline:
                raise LinkTimeoutError(
                    f"the board's run did not end within {timeout:.0f} s of ABORT (still "
                    f"running after {produced} steps); the core may be stuck: reset the board "
                    f"(power-cycle it, or `tern flash` it again)")
            time.sleep(0.002)

    def _tokens(self, start: int, wanted: int) -> tuple[list[int], bool]:
        wanted = min(wanted, 0xFFFF)
        payload = self._command(Code.TOKENS, TOKENS_REQUEST.pack(start, wanted),
                                f"TOKENS from {start}", reply_bytes=4 + 2 * min(wanted, 256))
        _, running, produced = TOKENS_REPLY.unpack(payload[:TOKENS_REPLY.size])
        tokens = np.frombuffer(payload[TOKENS_REPLY.size:], dtype="<u2").tolist()
        return tokens, bool(running) or produced > start + len(tokens)
