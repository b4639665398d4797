"""The accelerator core: memories, the sequencer, and the three functional units.

:class:`Core` runs a compiled program (``quant/compiler.py``) exactly as
:class:`tern_fpga.sim.golden.model.GoldenModel` defines it, and implements the protocol engine's
view :class:`tern_fpga.hw.core_interface.CoreInterface` (flipped): the host writes and reads every
memory 32 bits at a time while the core is idle, starts a run at a program entry with a token, and
gets the ARGMAX token back when the program halts.

Memories (all on chip; the weight memory's read side is the one stream an external-memory
streamer would replace):

========== ====================== =========================================================
memory     word                   read by
========== ====================== =========================================================
program    128-bit instruction    the sequencer (and the host)
constants  int64                  NORM and QUANT (eps term, scale mantissa and exponent)
vector     ``V`` x int32          two operand ports; one lane-masked write port. A work
                                  bank (both operands) and a constants bank (operand b)
                                  of ``vector_work_words`` and the rest
                                  (:mod:`tern_fpga.hw.memory_banks`)
embedding  ``V`` x int16          EMBED
weights    ``P`` x 2-bit codes    TMV, one word a cycle; the host's writes are
                                  read-modify-write (whole-word writes pack tighter)
activations ``P`` x int8          TMV; written by QUANT, ``V`` bytes a beat
tables     int32 (read only)      the host's CRC check: the units hold their own ROMs
========== ====================== =========================================================

Each instruction streams its operands from memory through one unit and its results back:
``ZERO`` writes zeros, ``EMBED`` and the element-wise instructions go through the
:class:`~tern_fpga.hw.row_unit.RowUnit`, ``NORM`` and ``QUANT`` through the
:class:`~tern_fpga.hw.norm_quantizer.NormQuantizer` (two passes over the operands), and ``TMV``
through the :class:`~tern_fpga.hw.ternary_matvec.TernaryMatVec`, whose row sums are packed ``V`` at
a time and scaled by the row unit's SCALE operation (ARGMAX watches the raw sums).

The sequencer issues one instruction at a time, with one overlap: a TMV runs on in the
*matrix context* (its own weight and activation reader, row-sum packing and result writer)
from its decode to its last result, and the sequencer meanwhile fetches the next instruction.
If that is a QUANT that reads none of the TMV's result it runs beside the TMV, filling the
other of the two activation buffers; anything else waits in DECODE until the matrix context is
idle. So the program's ``quant; tmv; quant; tmv`` pairs (the MLGRU's i, f, g projections) hide
a QUANT behind each TMV but the last, and the golden model's sequential order is kept:
every instruction sees the memory it would if each ran alone, with one exception that the ISA
allows (``docs/isa.md``): activations past the last QUANT's length are undefined, and here
they are the other buffer's older contents.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory

from tern_fpga.contracts import numerics
from tern_fpga.contracts.isa import (
    FIELDS,
    OPERATION_OF_OPCODE,
    SCALE_REGISTERS,
    Opcode,
    RowOperation,
)
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.core_interface import (
    CoreInterface,
    MemorySpace,
)
from tern_fpga.hw.memory_banks import BankedMemory
from tern_fpga.hw.norm_quantizer import NormQuantizer
from tern_fpga.hw.norm_quantizer import Operation as NormOperation
from tern_fpga.hw.row_unit import RowUnit
from tern_fpga.hw.ternary_matvec import TernaryMatVec
from tern_fpga.hw.weight_memory import BlockRAMWeights, WeightMemorySignature

__all__ = ["Core", "instruction_layout"]

EMBEDDING_BITS = 16

instruction_layout = data.StructLayout({name: width for name, (_, width) in FIELDS.items()})


def _table_words(params: AcceleratorParameters) -> list[int]:
    """The TABLES space: the sigmoid table at word 0, the rsqrt seeds at ``2 << T``."""
    sigmoid = [int(v) & 0xFFFF_FFFF for v in numerics.sigmoid_table(params)]
    rsqrt = [int(v) & 0xFFFF_FFFF for v in numerics.rsqrt_table(params)]
    return sigmoid + [0] * ((2 << params.sigmoid_table_bits) - len(sigmoid)) + rsqrt


class _HostWindow:
    """One memory as the host sees it: 32-bit words mapped onto wider memory words.

    ``read`` and ``write`` are ``Memory`` ports or :class:`tern_fpga.hw.memory_banks.MemoryPort` s.
    (The weight memory is not one: it answers the host itself, see
    :mod:`tern_fpga.hw.weight_memory`.)
    """

    def __init__(self, read, write, width: int):
        self.read, self.write = read, write
        self.lanes = width // 32

    @classmethod
    def of(cls, memory: Memory, width: int):
        return cls(memory.read_port(), memory.write_port(granularity=32), width)

    def _word(self, address):
        return address // self.lanes if self.lanes > 1 else address

    def host_write(self, m, address, value):
        lane = address % self.lanes if self.lanes > 1 else 0
        m.d.comb += [
            self.write.addr.eq(self._word(address)),
            self.write.data.eq(value.replicate(self.lanes)),
            self.write.en.eq(1 << lane if self.lanes > 1 else 1),
        ]

    def host_read_address(self, m, address):
        m.d.comb += [self.read.addr.eq(self._word(address)), self.read.en.eq(1)]

    def host_read_data(self, lane):
        words = self.read.data.word_select(lane, 32) if self.lanes > 1 else self.read.data
        return words


class Core(wiring.Component):
    """The accelerator core for one set of parameters.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
        Every width and size. The core needs ``ternary_lanes >= 16`` (a weight word of at least
        32 bits), ``vector_lanes >= 2`` (an embedding word of at least 32 bits), int16
        embeddings, and memory sizes that are whole words.
    weight_memory : wiring.Component or None
        The weight memory's backend, a component with the flipped
        :class:`~tern_fpga.hw.weight_memory.WeightMemorySignature` of ``params``: block RAM
        (:class:`~tern_fpga.hw.weight_memory.BlockRAMWeights`, the default) or a stream from
        external memory. With the signature's ``embeddings=True`` the backend holds the
        embeddings too: the core then has no embedding block RAM, asks for an EMBED's row at
        its decode and takes it from the backend's stream, and forwards the host's EMBEDDING
        accesses to the backend.

    Members
    -------
    The flipped :class:`tern_fpga.hw.core_interface.CoreInterface`: ``memory_request``,
    ``memory_response``, ``run``, ``done``, ``cycles``, ``instructions``, ``busy``,
    ``memory_status`` (the weight memory's ``status``).
    """

    def __init__(self, params: AcceleratorParameters, *, weight_memory=None):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if params.ternary_lanes < 16:
            raise ValueError(f"the core needs ternary_lanes >= 16, not {params.ternary_lanes}")
        if params.vector_lanes < 2:
            raise ValueError(f"the core needs vector_lanes >= 2, not {params.vector_lanes}")
        if params.embedding_bits != EMBEDDING_BITS:
            raise ValueError(f"the core stores int16 embeddings; embedding_bits must be 16, "
                             f"not {params.embedding_bits}")
        for name in ("vector_memory_words", "embedding_memory_words"):
            if getattr(params, name) % params.vector_lanes:
                raise ValueError(f"{name} must be a multiple of vector_lanes")
        self._params = params
        if weight_memory is None:
            weight_memory = BlockRAMWeights(params)
        accepted = [WeightMemorySignature(params, embeddings=embeddings).flip()
                     for embeddings in (False, True)]
        if getattr(weight_memory, "signature", None) not in accepted:
            raise TypeError(f"weight_memory must be a component with the signature "
                            f"{accepted[0]!r} or {accepted[1]!r}, not {weight_memory!r}")
        self._weight_memory = weight_memory
        # A backend with the embeddings holds them instead of the core's block RAM.
        self._external_embeddings = weight_memory.signature == accepted[1]
        super().__init__(CoreInterface(params).flip())

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def weight_memory(self):
        """The weight memory's backend."""
        return self._weight_memory

    def elaborate(self, platform):
        m = Module()
        p = self._params
        lanes, vector_bits, ternary = p.vector_lanes, p.vector_bits, p.ternary_lanes
        lane_shift = (lanes - 1).bit_length()

        m.submodules.matvec = matvec = TernaryMatVec(p)
        m.submodules.row = row = RowUnit(p)
        m.submodules.norm = norm = NormQuantizer(p)

        def memory(name, width, depth, init=(), attrs=None):
            m.submodules[name] = mem = Memory(shape=unsigned(width), depth=depth, init=init,
                                              attrs=attrs)
            return mem

        program = _HostWindow.of(memory("program", 128, p.program_words), 128)
        constants = _HostWindow.of(memory("constants", 64, p.program_words), 64)
        # Vector memory: the work bank is read by both operand ports, the constants bank (the
        # norm weights) by operand b alone, so only the work bank is stored twice.
        work_beats = p.work_words // lanes
        vector_banks = [work_beats, p.vector_memory_words // lanes - work_beats]
        vector_memory = BankedMemory(m, "vector", lanes * vector_bits,
                                     [bank for bank in vector_banks if bank],
                                     read_banks=[[0], [0, 1] if vector_banks[1] else [0]],
                                     granularity=32)
        vector_a, vector_b = vector_memory.read
        vector = _HostWindow(vector_b, vector_memory.write, lanes * vector_bits)
        external_embeddings = self._external_embeddings
        if not external_embeddings:
            embedding = _HostWindow.of(memory("embedding", lanes * EMBEDDING_BITS,
                                              p.embedding_memory_words // lanes),
                                       lanes * EMBEDDING_BITS)
        # Weight memory: a backend of its own (block RAM, or a stream from external memory).
        m.submodules.weight_memory = weights = self._weight_memory
        activation_words = -(-p.max_features // ternary)
        # Two buffers (a QUANT fills one while a TMV reads the other, see the sequencer), of a
        # few very wide words: block RAM would be used for its width, not its depth.
        activations = memory("activations", 8 * ternary, 2 * activation_words,
                             attrs={"ram_style": "distributed"})
        activation_read = activations.read_port()
        activation_write = activations.write_port(granularity=8)
        table_words = _table_words(p)
        tables = memory("tables", 32, len(table_words), init=table_words)
        table_read = tables.read_port()
        windows = {MemorySpace.PROGRAM: program, MemorySpace.CONSTANTS: constants,
                   MemorySpace.VECTOR: vector}
        # The spaces the weight-memory backend answers, in its own time.
        backend_spaces = [MemorySpace.WEIGHTS]
        if external_embeddings:
            backend_spaces.append(MemorySpace.EMBEDDING)
        else:
            windows[MemorySpace.EMBEDDING] = embedding

        # Sequencer state -----------------------------------------------------------------------
        pc = Signal(range(p.program_words + 1))
        token = Signal(16)
        ins = Signal(instruction_layout)
        beat_limit = max(p.vector_memory_words, p.max_features) // lanes + 2
        beats = Signal(range(beat_limit))
        scales = Signal(data.ArrayLayout(norm.scale.payload.shape(), SCALE_REGISTERS))
        running = Signal()
        m.d.comb += [self.busy.eq(running), self.memory_status.eq(weights.status)]
        with m.If(running & ~self.done.valid):  # not while the answer waits to be taken
            m.d.sync += self.cycles.eq(self.cycles + 1)
        # The activation buffer that the program's last QUANT filled (and a TMV reads); a QUANT
        # fills the other one, so that it may run beside a TMV that reads this one.
        latest = Signal()

        # Operand reader: beat k reads vector words a + k and b + k (NORM/QUANT: two passes),
        # or the embedding row.
        read_index = Signal(range(2 * beat_limit))
        read_total = Signal.like(read_index)
        pass_index = Signal.like(beats)        # k within the current pass (vector operands)
        read_valid = Signal()                  # the read ports' data is a beat not yet taken
        read_ready = Signal()                  # the beat's consumer takes it this cycle
        read_base_a = Signal(range(p.vector_memory_words // lanes + 1))
        read_base_b = Signal.like(read_base_a)
        read_base_embedding = Signal(range(p.embedding_memory_words // lanes + 1))
        advance = ~read_valid | read_ready
        m.d.comb += [
            vector_a.addr.eq(read_base_a + pass_index),
            vector_b.addr.eq(read_base_b + pass_index),
        ]
        if not external_embeddings:
            m.d.comb += embedding.read.addr.eq(read_base_embedding + pass_index)
        with m.If(running):
            m.d.comb += [vector_a.en.eq(advance), vector_b.en.eq(advance)]
            if not external_embeddings:
                m.d.comb += embedding.read.en.eq(advance)
            with m.If(advance):
                m.d.sync += read_valid.eq(read_index < read_total)
                with m.If(read_index < read_total):
                    m.d.sync += read_index.eq(read_index + 1)
                    m.d.sync += pass_index.eq(Mux(pass_index + 1 == beats, 0, pass_index + 1))

        vector_a_lanes = data.View(data.ArrayLayout(signed(vector_bits), lanes),
                                   vector_a.data)
        vector_b_lanes = data.View(data.ArrayLayout(signed(vector_bits), lanes), vector_b.data)
        embedding_lanes = data.View(data.ArrayLayout(signed(EMBEDDING_BITS), lanes),
                                    weights.embedding_data.payload if external_embeddings
                                    else embedding.read.data)
        if external_embeddings:
            # An EMBED's row is asked for once, at its decode; the backend streams it.
            embedding_request_valid = Signal()
            m.d.comb += [
                weights.embedding_request.valid.eq(embedding_request_valid),
                weights.embedding_request.payload.start.eq(read_base_embedding << lane_shift),
                weights.embedding_request.payload.elements.eq(beats << lane_shift)]
            with m.If(weights.embedding_request.ready):
                m.d.sync += embedding_request_valid.eq(0)

        # The matrix context: a TMV runs here from its decode to its last result, beside the
        # sequencer, which meanwhile runs the next instruction if that is a QUANT that may
        # overlap it (see DECODE). It reads weight word imm + k and activation word k mod beats
        # of the buffer that was the latest when the TMV was decoded.
        matrix = Signal(instruction_layout)    # the TMV's fields
        matrix_pc = Signal.like(pc)
        matrix_busy = Signal()
        matrix_buffer = Signal()
        matrix_read_index = Signal(range(2 * p.weight_memory_words + 2))
        matrix_read_total = Signal.like(matrix_read_index)
        act_index = Signal(range(activation_words + 1))
        matrix_read_valid = Signal()
        matrix_read_ready = Signal()
        matrix_advance = ~matrix_read_valid | matrix_read_ready
        # A word is read when the unit can take it and the weight memory has it.
        matrix_take = (matrix_advance & (matrix_read_index < matrix_read_total)
                       & weights.matrix_available)
        m.d.comb += [
            weights.matrix_addr.eq(matrix.imm + matrix_read_index),
            activation_read.addr.eq(act_index + Mux(matrix_buffer, activation_words, 0)),
        ]
        # The TMV's words are announced once, at its decode (a read-ahead backend starts here).
        prefetch_valid = Signal()
        m.d.comb += [weights.prefetch.valid.eq(prefetch_valid),
                     weights.prefetch.payload.start.eq(matrix.imm),
                     weights.prefetch.payload.words.eq(matrix_read_total)]
        with m.If(weights.prefetch.ready):
            m.d.sync += prefetch_valid.eq(0)
        with m.If(matrix_busy):
            m.d.comb += [weights.matrix_en.eq(matrix_take),
                         activation_read.en.eq(matrix_take)]
            with m.If(matrix_advance):
                m.d.sync += matrix_read_valid.eq(matrix_take)
                with m.If(matrix_take):
                    m.d.sync += [matrix_read_index.eq(matrix_read_index + 1),
                                 act_index.eq(Mux(act_index + 1 == matrix.a, 0, act_index + 1))]

        # Result writer: one vector-memory beat a cycle at dst + k, lanes masked; the matrix
        # context's (a TMV's SCALE results) or the sequencer's (never both: the one instruction
        # that runs beside a TMV, QUANT, writes the activation buffer).
        write_index = Signal.like(beats)
        write_valid = Signal()
        write_data = Signal(lanes * vector_bits)
        write_mask = Signal(lanes)
        matrix_write_index = Signal.like(beats)
        matrix_write_valid = Signal()
        matrix_write_data = Signal(lanes * vector_bits)
        matrix_write_mask = Signal(lanes)
        m.d.comb += [
            vector.write.addr.eq(Mux(matrix_busy,
                                     (matrix.dst >> lane_shift) + matrix_write_index,
                                     (ins.dst >> lane_shift) + write_index)),
            vector.write.data.eq(Mux(matrix_busy, matrix_write_data, write_data)),
        ]
        with m.If(running & matrix_busy & matrix_write_valid):
            m.d.comb += vector.write.en.eq(matrix_write_mask)
            m.d.sync += matrix_write_index.eq(matrix_write_index + 1)
        with m.Elif(running & write_valid):
            m.d.comb += vector.write.en.eq(write_mask)
            m.d.sync += write_index.eq(write_index + 1)
        # Named copies of the vector write port, for testbenches that watch it, with the
        # program counter of the instruction that writes.
        m.d.comb += [Signal(lanes, name="vector_write_en").eq(vector.write.en),
                     Signal.like(vector.write.addr, name="vector_write_addr").eq(
                         vector.write.addr),
                     Signal(lanes * vector_bits, name="vector_write_data").eq(vector.write.data),
                     Signal.like(pc, name="vector_write_pc").eq(
                         Mux(matrix_busy, matrix_pc, pc))]

        def length_mask(index):
            """Lanes of beat ``index`` that hold elements below ``ins.length``."""
            remaining = ins.length - (index << lane_shift)
            return Cat(remaining > lane for lane in range(lanes))

        # The units' results are always taken: they come only while the instruction that asked
        # for them is in its state (or, for a TMV, the matrix context is busy), which writes each
        # as it comes. A constant ready keeps the units' pipeline enables out of the paths from
        # the sequencer's state (with it, the V=8 demo design's critical path, 37 ns).
        m.d.comb += [row.result.ready.eq(1), norm.result.ready.eq(1), norm.scale.ready.eq(1)]
        with m.If(norm.scale.valid):           # a QUANT's output scale, before its results
            m.d.sync += scales[ins.dst[:2]].eq(norm.scale.payload)

        # Units' commands are offered once per instruction, from registers loaded at decode.
        row_command_valid, norm_command_valid, matvec_command_valid = Signal(), Signal(), Signal()
        m.d.comb += [row.command.valid.eq(row_command_valid),
                     norm.command.valid.eq(norm_command_valid),
                     matvec.command.valid.eq(matvec_command_valid)]
        with m.If(row.command.ready):
            m.d.sync += row_command_valid.eq(0)
        with m.If(norm.command.ready):
            m.d.sync += norm_command_valid.eq(0)
        with m.If(matvec.command.ready):
            m.d.sync += matvec_command_valid.eq(0)
        row_operation = Signal(RowOperation)
        row_length = Signal.like(row.command.payload.length)
        row_shift = Signal.like(row.command.payload.shift)
        row_scale = Signal.like(row.command.payload.scale)
        epsilon_term = Signal.like(norm.command.payload.epsilon_term)
        constant = Signal.like(norm.command.payload.constant)
        m.d.comb += [
            row.command.payload.operation.eq(row_operation),
            row.command.payload.length.eq(row_length),
            row.command.payload.shift.eq(row_shift),
            row.command.payload.scale.eq(row_scale),
            norm.command.payload.operation.eq(
                Mux(ins.opcode == Opcode.QUANT, NormOperation.QUANT, NormOperation.NORM)),
            norm.command.payload.length.eq(ins.length),
            norm.command.payload.epsilon_term.eq(epsilon_term),
            norm.command.payload.constant.eq(constant),
            matvec.command.payload.rows.eq(matrix.length),
            matvec.command.payload.beats.eq(matrix.a),
        ]

        # TMV: row sums, ARGMAX, packing V sums into one SCALE beat.
        row_count = Signal(range((1 << FIELDS["length"][1]) + 1))
        best = Signal(signed(p.accumulator_bits))
        best_row = Signal(16)
        best_row_next = Signal(16)             # best_row, including this cycle's row sum
        packed = Signal(data.ArrayLayout(signed(vector_bits), lanes))
        packed_count = Signal(range(lanes + 1))
        packed_valid = Signal()
        m.d.comb += best_row_next.eq(best_row)
        m.d.sync += best_row.eq(best_row_next)

        def take_row_sum(m):
            value = matvec.result.payload
            with m.If((row_count == 0) | (value > best)):
                m.d.sync += best.eq(value)
                m.d.comb += best_row_next.eq(row_count)
            m.d.sync += row_count.eq(row_count + 1)

        with m.If(matrix_busy):
            m.d.comb += [
                matvec.weights.valid.eq(matrix_read_valid),
                matvec.activations.valid.eq(matrix_read_valid),
                matvec.weights.payload.as_value().eq(weights.matrix_data),
                matvec.activations.payload.as_value().eq(activation_read.data),
                matrix_read_ready.eq(matvec.weights.ready & matvec.activations.ready),
            ]
            last_row = row_count + 1 == matrix.length
            finished = Signal()
            with m.If(matrix.flags[1]):        # NO_WRITE
                m.d.comb += matvec.result.ready.eq(1)
                with m.If(matvec.result.valid):
                    take_row_sum(m)
                    m.d.comb += finished.eq(last_row)
            with m.Else():
                # Pack V sums into one beat for the row unit's SCALE.
                m.d.comb += [row.a.valid.eq(packed_valid), row.a.payload.eq(packed)]
                with m.If(packed_valid & row.a.ready):
                    m.d.sync += [packed_valid.eq(0), packed_count.eq(0)]
                m.d.comb += matvec.result.ready.eq(~packed_valid)
                with m.If(matvec.result.valid & ~packed_valid):
                    take_row_sum(m)
                    m.d.sync += [packed[packed_count[:max(lane_shift, 1)] if lanes > 1
                                        else 0].eq(matvec.result.payload),
                                 packed_count.eq(packed_count + 1)]
                    with m.If((packed_count + 1 == lanes) | last_row):
                        m.d.sync += packed_valid.eq(1)
                m.d.comb += [matrix_write_valid.eq(row.result.valid),
                             matrix_write_data.eq(row.result.payload.data),
                             matrix_write_mask.eq(row.result.payload.mask),
                             finished.eq(row.result.valid & row.result.payload.last)]
            with m.If(finished):
                m.d.sync += matrix_busy.eq(0)
                with m.If(matrix.flags[0]):    # ARGMAX
                    m.d.sync += token.eq(best_row_next)

        # Host window ----------------------------------------------------------------------------
        request = self.memory_request.payload
        response_pending = Signal()
        response_space = Signal(3)
        response_lane = Signal(8)
        m.d.comb += [table_read.addr.eq(request.address),
                     weights.host.payload.address.eq(request.address),
                     weights.host.payload.write_data.eq(request.write_data),
                     weights.host.payload.write.eq(request.write),
                     weights.host.payload.embeddings.eq(request.space == MemorySpace.EMBEDDING)]

        # Sequencer --------------------------------------------------------------------------------
        with m.FSM():
            with m.State("IDLE"):
                with m.If(response_pending):
                    data_of_space = {
                        space: window.host_read_data(response_lane[:max(
                            (window.lanes - 1).bit_length(), 1)])
                        for space, window in windows.items()}
                    with m.Switch(response_space):
                        for space, value in data_of_space.items():
                            with m.Case(space):
                                m.d.comb += self.memory_response.payload.eq(value)
                        with m.Case(MemorySpace.TABLES):
                            m.d.comb += self.memory_response.payload.eq(table_read.data)
                    with m.If(Cat(response_space == space for space in backend_spaces).any()):
                        m.d.comb += [
                            self.memory_response.payload.eq(weights.host_response.payload),
                            self.memory_response.valid.eq(weights.host_response.valid),
                            weights.host_response.ready.eq(self.memory_response.ready)]
                    with m.Else():
                        m.d.comb += self.memory_response.valid.eq(1)
                    with m.If(self.memory_response.valid & self.memory_response.ready):
                        m.d.sync += response_pending.eq(0)
                with m.Elif(self.memory_request.valid):
                    m.d.comb += self.memory_request.ready.eq(1)
                    with m.Switch(request.space):
                        for space, window in windows.items():
                            with m.Case(space):
                                with m.If(request.write):
                                    window.host_write(m, request.address, request.write_data)
                                with m.Else():
                                    window.host_read_address(m, request.address)
                        with m.Case(*backend_spaces):  # the backend answers, in its time
                            m.d.comb += [weights.host.valid.eq(1),
                                         self.memory_request.ready.eq(weights.host.ready)]
                        with m.Case(MemorySpace.TABLES):
                            m.d.comb += table_read.en.eq(1)
                    with m.If(~request.write & self.memory_request.ready):
                        m.d.sync += [response_pending.eq(1), response_space.eq(request.space),
                                     response_lane.eq(request.address)]
                with m.Elif(self.run.valid):
                    m.d.comb += self.run.ready.eq(1)
                    m.d.sync += [pc.eq(self.run.payload.entry), token.eq(self.run.payload.token),
                                 running.eq(1)]
                    m.next = "FETCH"

            with m.State("FETCH"):
                m.d.comb += [program.read.addr.eq(pc), program.read.en.eq(1)]
                m.next = "DECODE"

            with m.State("DECODE"):
                fetched = data.View(instruction_layout, program.read.data)
                # Read the same word again: the instruction may wait here for the matrix.
                m.d.comb += [program.read.addr.eq(pc), program.read.en.eq(1)]

                def meets_matrix_result(start):
                    """[start, start + length) meets the running TMV's result."""
                    return (~matrix.flags[1] & (start < matrix.dst + matrix.length)
                            & (matrix.dst < start + fetched.length))

                # Beside a running TMV only a QUANT may start, and only one: it neither reads
                # the TMV's result nor refills the activation buffer that the TMV reads.
                beside_matrix = ((fetched.opcode == Opcode.QUANT) & (matrix_buffer == latest)
                                 & ~meets_matrix_result(fetched.a)
                                 & ~meets_matrix_result(fetched.b))
                with m.If(~matrix_busy | beside_matrix):
                    m.d.sync += [ins.eq(fetched), read_index.eq(0), pass_index.eq(0),
                                 read_valid.eq(0), write_index.eq(0)]
                    instruction_beats = (fetched.length + lanes - 1) >> lane_shift
                    m.d.sync += beats.eq(instruction_beats)
                    m.d.comb += [constants.read.addr.eq(fetched.imm), constants.read.en.eq(1)]
                    m.d.sync += [read_base_a.eq(fetched.a >> lane_shift),
                                 read_base_b.eq(fetched.b >> lane_shift),
                                 read_base_embedding.eq(token * (fetched.length >> lane_shift))]
                    row_command = [row_length.eq(fetched.length), row_shift.eq(fetched.imm),
                                   row_scale.eq(scales[fetched.b[:2]])]
                    with m.Switch(fetched.opcode):
                        with m.Case(Opcode.HALT):
                            m.next = "DONE"
                        with m.Case(Opcode.ZERO):
                            m.next = "ZERO"
                        with m.Case(Opcode.NORM, Opcode.QUANT):
                            m.d.sync += read_total.eq(2 * instruction_beats)
                            m.next = "CONSTANT"
                        with m.Case(Opcode.TMV):
                            m.d.sync += [
                                matrix.eq(fetched), matrix_pc.eq(pc), matrix_busy.eq(1),
                                matrix_buffer.eq(latest), matrix_read_index.eq(0),
                                matrix_read_total.eq(fetched.length * fetched.a),
                                act_index.eq(0), matrix_read_valid.eq(0),
                                prefetch_valid.eq(1),
                                matrix_write_index.eq(0), row_count.eq(0), packed_count.eq(0),
                                packed_valid.eq(0), matvec_command_valid.eq(1),
                                row_command_valid.eq(~fetched.flags[1]),
                                row_operation.eq(RowOperation.SCALE), *row_command]
                            m.next = "NEXT"
                        for opcode, operation in OPERATION_OF_OPCODE.items():
                            with m.Case(opcode):
                                m.d.sync += [read_total.eq(instruction_beats),
                                             row_command_valid.eq(1),
                                             row_operation.eq(operation), *row_command]
                                if external_embeddings and opcode == Opcode.EMBED:
                                    m.d.sync += embedding_request_valid.eq(1)
                                m.next = "ROW"
                    with m.If(fetched.opcode != Opcode.HALT):
                        m.d.sync += self.instructions.eq(self.instructions + 1)

            # NORM and QUANT read their three constants, one a cycle.
            with m.State("CONSTANT"):
                m.d.sync += epsilon_term.eq(constants.read.data)
                m.d.comb += [constants.read.addr.eq(ins.imm + 1), constants.read.en.eq(1)]
                m.next = "CONSTANT_MANTISSA"
            with m.State("CONSTANT_MANTISSA"):
                m.d.sync += constant.mantissa.eq(constants.read.data)
                m.d.comb += [constants.read.addr.eq(ins.imm + 2), constants.read.en.eq(1)]
                m.next = "CONSTANT_EXPONENT"
            with m.State("CONSTANT_EXPONENT"):
                m.d.sync += [constant.exponent.eq(constants.read.data), norm_command_valid.eq(1)]
                m.next = "NORM"

            with m.State("ZERO"):
                m.d.comb += [write_valid.eq(1), write_data.eq(0),
                             write_mask.eq(length_mask(write_index))]
                with m.If(write_index + 1 == beats):
                    m.next = "NEXT"

            with m.State("ROW"):
                is_embed = ins.opcode == Opcode.EMBED
                m.d.comb += [
                    row.a.valid.eq(read_valid), row.b.valid.eq(read_valid),
                    read_ready.eq(row.a.ready),  # b moves with a (binary operations)
                    row.b.payload.eq(vector_b_lanes),
                    write_valid.eq(row.result.valid),
                    write_data.eq(row.result.payload.data),
                    write_mask.eq(row.result.payload.mask),
                ]
                with m.If(is_embed):
                    m.d.comb += [row.a.payload[lane].eq(embedding_lanes[lane])
                                 for lane in range(lanes)]
                    if external_embeddings:
                        # The row's words from the backend's stream, joined with the operand
                        # reader's beats (whose vector words an EMBED ignores).
                        stream_valid = weights.embedding_data.valid
                        m.d.comb += [
                            row.a.valid.eq(read_valid & stream_valid),
                            row.b.valid.eq(read_valid & stream_valid),
                            read_ready.eq(row.a.ready & stream_valid),
                            weights.embedding_data.ready.eq(row.a.ready & read_valid)]
                with m.Else():
                    m.d.comb += row.a.payload.eq(vector_a_lanes)
                with m.If(row.result.valid & row.result.payload.last):
                    m.next = "NEXT"

            with m.State("NORM"):
                is_quant = ins.opcode == Opcode.QUANT
                m.d.comb += [
                    norm.operands.valid.eq(read_valid),
                    norm.operands.payload.x.eq(vector_a_lanes),
                    norm.operands.payload.weight.eq(vector_b_lanes),
                    read_ready.eq(norm.operands.ready),
                ]
                quant_lanes = data.View(data.ArrayLayout(signed(vector_bits), lanes),
                                        norm.result.payload)
                with m.If(is_quant):
                    element = write_index << lane_shift
                    offset = element[:(ternary - 1).bit_length()]
                    m.d.comb += [
                        activation_write.addr.eq((element >> (ternary - 1).bit_length())
                                                 + Mux(latest, 0, activation_words)),
                        activation_write.data.eq(
                            Cat(quant_lanes[lane][:8] for lane in range(lanes))
                            .replicate(ternary // lanes)),
                        activation_write.en.eq(
                            Mux(norm.result.valid, Const((1 << lanes) - 1) << offset, 0)),
                    ]
                    with m.If(norm.result.valid):
                        m.d.sync += write_index.eq(write_index + 1)
                with m.Else():
                    m.d.comb += [write_valid.eq(norm.result.valid),
                                 write_data.eq(norm.result.payload),
                                 write_mask.eq(length_mask(write_index))]
                # A QUANT's scale leaves before its first result, so it is in by now.
                with m.If(norm.result.valid & (write_index + 1 == beats)):
                    with m.If(is_quant):
                        m.d.sync += latest.eq(~latest)
                    m.next = "NEXT"

            with m.State("NEXT"):
                m.d.sync += pc.eq(pc + 1)
                m.next = "FETCH"

            with m.State("DONE"):
                m.d.comb += [self.done.valid.eq(1), self.done.payload.eq(token)]
                with m.If(self.done.ready):
                    m.d.sync += running.eq(0)
                    m.next = "IDLE"
        return m
