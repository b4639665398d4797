"""The dataflow core's matrix pipe: TMVs back to back, from the weight and activation memories to
scaled results packed for the vector memory, with no fill or drain between them (issue 15,
items 1 and 2).

::

    command ─► queue ─► reader ──words + activations──► SegmentedMatVec ──sums──► RowSumScaler
                 │        └─ prefetch, matvec command                 │ (raw sums)  ▲ │ values
                 │                                                   ArgMax  scale ─┘ Packer ─► write
                 └──────────── writer command ───────────────────────────────────────┘      done

- The *reader* reads a command's ``words`` weight words from ``weight_start`` on, and with word
  ``i`` activation word ``activation_start + i mod beats``, one pair a cycle. It takes the next
  command in the cycle that it issues the current one's last read, so consecutive TMVs' words
  follow each other with no bubble; the matrix unit, the scaler and the packer are pipelines
  that take the next command's beats right behind the current one's.
- The *packer* places each group's ``count`` values at lanes ``r mod V`` on (``r``: the row;
  ``dst`` is a multiple of ``V`` and ``k`` divides ``V``, so a group never straddles two vector
  words) and offers a vector-memory write when a word is full or the command ends: one write
  every ``V / k`` groups.
- *ArgMax* watches the raw row sums (as :class:`~tern_fpga.sim.golden.model.GoldenModel`'s
  ``np.argmax``: the first of equal maxima wins).
- ``done`` gives one beat per command, in order, once its last write has been taken, with the
  command's ArgMax token (the core keeps it for ARGMAX instructions).
- ``scale`` gives each command's scale, in command order, on a stream of its own: the scaler
  needs it only when the command's first row sums reach it, so it may come after the command
  (the core's QUANT output scale comes some cycles after the values that a TMV reads; the
  reads go on meanwhile, until the credits stop them).

The weight port is the matrix side of
:class:`~tern_fpga.hw.weight_memory.WeightMemorySignature` (``matrix_*`` and ``prefetch``), so
both backends serve it; the activation port is a block-RAM read port (data one cycle after
``en``, held until the next ``en``).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.pipeline import bypass, delay, register
from tern_fpga.hw.dataflow.row_sum_scaler import RowSumScaler
from tern_fpga.hw.dataflow.segmented_matvec import SegmentedMatVec
from tern_fpga.hw.dataflow.segmented_matvec import command_layout as matvec_command_layout
from tern_fpga.hw.scale_layout import scale_layout
from tern_fpga.hw.weight_memory import prefetch_layout, weight_word_bits

__all__ = ["MatrixPipe", "command_layout", "done_layout", "write_layout"]

#: Commands the pipe holds beyond the one being read (the queue before the reader).
QUEUE_DEPTH = 2
#: Commands in flight between the reader and the packer (each has a writer entry).
IN_FLIGHT = 4


def activation_words(params: AcceleratorParameters, max_segments: int) -> int:
    """Words of one activation buffer: ``max_features`` elements at ``P / S`` a word (the
    segmented layout repeats each beat's elements in every segment)."""
    return -(-params.max_features * max_segments // params.ternary_lanes)


def command_layout(params: AcceleratorParameters, max_segments: int) -> data.StructLayout:
    """One TMV: ``weight_start``, ``words`` (``ceil(rows / k) * beats``), ``rows``, ``beats``,
    ``segments_log2`` (the matrix unit's command), ``activation_start`` (the buffer's first
    word), ``dst`` (vector element, a multiple of ``V``) and ``no_write``; its scale comes on
    the pipe's ``scale`` stream."""
    matvec = matvec_command_layout(params, max_segments)
    return data.StructLayout({
        "weight_start": range(params.weight_memory_words),
        "words": range(1, params.weight_memory_words + 1),
        "rows": matvec["rows"].shape,
        "beats": matvec["beats"].shape,
        "segments_log2": matvec["segments_log2"].shape,
        "activation_start": range(2 * activation_words(params, max_segments)),
        "dst": range(params.vector_memory_words),
        "no_write": 1,
    })


def write_layout(params: AcceleratorParameters) -> data.StructLayout:
    """A vector-memory write: ``address`` (vector word), ``data`` (``V`` lanes), ``mask``."""
    return data.StructLayout({
        "address": range(params.vector_memory_words // params.vector_lanes),
        "data": data.ArrayLayout(signed(params.vector_bits), params.vector_lanes),
        "mask": params.vector_lanes,
    })


def done_layout(params: AcceleratorParameters, max_segments: int) -> data.StructLayout:
    """``token``: the row of the command's largest row sum (the first of equal ones)."""
    return data.StructLayout({"token": range(params.weight_memory_words * max_segments)})


class MatrixPipe(wiring.Component):
    """TMVs back to back: reader, segmented matrix unit, scaler, packer and ArgMax.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    max_segments : int
        ``S`` of the matrix unit; at most ``V``, so that a group fits one vector word.

    Members
    -------
    command : ``In(stream.Signature(command_layout(params, max_segments)))``
    scale : ``In(stream.Signature(scale_layout(params)))``
        The commands' scales, one a command, in order; before or after the command.
    matrix_addr, matrix_en : ``Out``; matrix_data, matrix_available : ``In``
        The weight memory's matrix port (:class:`~tern_fpga.hw.weight_memory.
        WeightMemorySignature`).
    prefetch : ``Out(stream.Signature(prefetch_layout(params)))``
    activation_addr, activation_en : ``Out``; activation_data : ``In(8 * P)``
    write : ``Out(stream.Signature(write_layout(params)))``
    done : ``Out(stream.Signature(done_layout(params, max_segments)))``
    released : ``Out(1)``
        A pulse in the cycle that a command's last activation word is read (enabled): its
        activation buffer may be written from the next cycle on (the scoreboard's ``release``).
    busy : ``Out(1)``
        High while a command is anywhere in the pipe.
    """

    def __init__(self, params: AcceleratorParameters, *, max_segments: int):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        lanes = params.vector_lanes
        if max_segments > lanes or lanes % max_segments:
            raise ValueError(f"max_segments={max_segments} must divide vector_lanes={lanes}: "
                             f"a group's rows must fit one vector word")
        self._params = params
        self._max_segments = max_segments
        super().__init__({
            "command": In(stream.Signature(command_layout(params, max_segments))),
            "scale": In(stream.Signature(scale_layout(params))),
            "matrix_addr": Out(range(params.weight_memory_words)),
            "matrix_en": Out(1),
            "matrix_data": In(weight_word_bits(params)),
            "matrix_available": In(1),
            "prefetch": Out(stream.Signature(prefetch_layout(params))),
            "activation_addr": Out(range(2 * activation_words(params, max_segments))),
            "activation_en": Out(1),
            "activation_data": In(params.activation_bits * params.ternary_lanes),
            "write": Out(stream.Signature(write_layout(params))),
            "done": Out(stream.Signature(done_layout(params, max_segments))),
            "released": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        params, segments = self._params, self._max_segments
        m.submodules.matvec = matvec = SegmentedMatVec(params, max_segments=segments)
        m.submodules.scaler = scaler = RowSumScaler(params, max_segments=segments)
        queue = _Queue(m, "queue", command_layout(params, segments), QUEUE_DEPTH,
                       buffered=False, bypassed=True)
        # The matrix unit takes the next command with the current one's last beat, which
        # leaves the reader a cycle later: the commands wait in a queue of their own.
        matvec_commands = _Queue(m, "matvec_commands", matvec.command.payload.shape(), 2,
                                 buffered=False)
        scales = _Queue(m, "scales", scale_layout(params), IN_FLIGHT)
        writers = _Queue(m, "writers", data.StructLayout({
            "dst": range(params.vector_memory_words), "no_write": 1,
            "segments_log2": matvec.command.payload.segments_log2.shape()}), IN_FLIGHT)
        tokens = _Queue(m, "tokens", done_layout(params, segments), IN_FLIGHT)
        queue.connect_input(m, self.command)
        matvec_commands.connect_output(m, matvec.command)
        scales.connect_input(m, self.scale)
        scales.connect_output(m, scaler.scale)
        wiring.connect(m, matvec.result, scaler.sums)

        reading = self._elaborate_reader(m, queue, matvec, matvec_commands, writers)
        self._elaborate_argmax(m, matvec, tokens)
        self._elaborate_packer(m, scaler, writers, tokens)
        m.d.comb += self.busy.eq(queue.valid | reading | matvec_commands.valid | matvec.busy
                                 | scaler.busy | writers.valid)
        return m

    def _elaborate_reader(self, m, queue, matvec, matvec_commands, writers):
        """Take a command (prefetch, the matrix unit's command, the writer entry),
        then read its words; the next command's reads follow the last with no bubble. Returns
        a signal that is high while words are read or wait for the matrix unit.

        The memories' read enable comes from registers only (``reading``, the skid register's
        ``held``) and the weight port's ``matrix_available``, never from the matrix unit's
        ``ready``: that enable reaches every block RAM of the weight memory, across the chip
        (the whole core's critical path when it was ``ready``-gated, docs/dataflow.md). A word
        read is at the memories' outputs the next cycle (``fresh``) and stays there until the
        next read; when the matrix unit does not take it then and a read follows, it moves into
        the skid register, and no read is made while the skid register is full."""
        command = Signal(command_layout(self._params, self._max_segments))
        reading = Signal()
        # Addresses and counts down are registers, so that neither the memories' addresses nor
        # the last-read test (a compare with zero) wait for an adder.
        weight_address = Signal.like(self.matrix_addr)
        activation_address = Signal.like(self.activation_addr)
        reads_after = Signal.like(command.words)      # reads of the command after the next
        beats_after = Signal.like(command.beats)      # beats of the group after the next
        fresh = Signal()                              # the memories' outputs hold a word
        held = Signal()                               # the skid register holds one
        held_weights = Signal.like(self.matrix_data)
        held_activations = Signal.like(self.activation_data)
        last_read = reads_after == 0
        take = reading & ~held & self.matrix_available
        following = queue.payload
        hand_over = matvec_commands.ready & self.prefetch.ready & writers.ready
        start = queue.valid & hand_over & (~reading | (take & last_read))
        m.d.comb += [
            queue.take.eq(start),
            self.prefetch.valid.eq(start),
            self.prefetch.payload.start.eq(following.weight_start),
            self.prefetch.payload.words.eq(following.words),
            matvec_commands.put.eq(start),
            matvec_commands.input.rows.eq(following.rows),
            matvec_commands.input.beats.eq(following.beats),
            matvec_commands.input.segments_log2.eq(following.segments_log2),
            writers.put.eq(start),
            writers.input.dst.eq(following.dst),
            writers.input.no_write.eq(following.no_write),
            writers.input.segments_log2.eq(following.segments_log2),
            self.matrix_addr.eq(weight_address),
            self.matrix_en.eq(take),
            self.activation_addr.eq(activation_address),
            self.activation_en.eq(take),
            self.released.eq(take & last_read),
        ]
        # The word offered: the skid register's, else the memories' outputs.
        accepted = (held | fresh) & matvec.weights.ready & matvec.activations.ready
        with m.If(held & accepted):
            m.d.sync += held.eq(0)
        with m.Elif(~held & fresh & ~accepted & take):  # the next read would overwrite it
            m.d.sync += [held.eq(1), held_weights.eq(self.matrix_data),
                         held_activations.eq(self.activation_data)]
        with m.If(take):
            m.d.sync += fresh.eq(1)
        with m.Elif(accepted & ~held):
            m.d.sync += fresh.eq(0)
        with m.If(take):
            group_done = beats_after == 0
            m.d.sync += [
                weight_address.eq(weight_address + 1), reads_after.eq(reads_after - 1),
                beats_after.eq(Mux(group_done, command.beats - 1, beats_after - 1)),
                activation_address.eq(Mux(group_done, command.activation_start,
                                          activation_address + 1)),
            ]
            with m.If(last_read):
                m.d.sync += reading.eq(0)
        with m.If(start):
            m.d.sync += [command.eq(following), reading.eq(1),
                         weight_address.eq(following.weight_start),
                         activation_address.eq(following.activation_start),
                         reads_after.eq(following.words - 1),
                         beats_after.eq(following.beats - 1)]
        m.d.comb += [
            matvec.weights.valid.eq(held | fresh),
            matvec.activations.valid.eq(held | fresh),
            matvec.weights.payload.as_value().eq(Mux(held, held_weights, self.matrix_data)),
            matvec.activations.payload.as_value().eq(
                Mux(held, held_activations, self.activation_data)),
        ]
        return reading | fresh | held

    def _elaborate_argmax(self, m, matvec, tokens):
        """Each command's ArgMax over its raw row sums, into ``tokens`` at its last beat: the
        first maximum of a beat (a registered tree, ``log2 S`` levels), then against the
        command's running best."""
        segments = self._max_segments
        beat = matvec.result.payload
        fire = matvec.result.valid & matvec.result.ready
        row_base = Signal.like(tokens.input.token)    # the beat's first row: the sum of counts
        with m.If(fire):
            m.d.sync += row_base.eq(Mux(beat.last, 0, row_base + beat.count))
        # The beat's first maximum by a tree of registered pairwise levels: the right entry
        # (higher lanes) wins only if it is a row (lanes from count on are not) and strictly
        # larger, so ties go to the lower lane; the left entry always holds lane 0's group.
        entries = [(register(m, beat.sums[lane], f"argmax_sum{lane}_0"), Const(lane),
                    register(m, lane < beat.count, f"argmax_row{lane}_0"))
                   for lane in range(segments)]
        tag = {"valid": register(m, fire, "argmax_valid_0", reset_less=False),
               "last": register(m, beat.last, "argmax_last_0"),
               "base": register(m, row_base, "argmax_base_0")}
        level = 0
        while len(entries) > 1:
            level += 1
            paired = []
            for (left, left_lane, left_row), (right, right_lane, right_row) in zip(
                    entries[0::2], entries[1::2]):
                wins = right_row & (right > left)
                paired.append((register(m, Mux(wins, right, left), f"argmax_sum_{level}"),
                               register(m, Mux(wins, right_lane, left_lane),
                                        f"argmax_lane_{level}"),
                               register(m, left_row, f"argmax_row_{level}")))
            entries, tag = paired, delay(m, tag, f"argmax_{level}")
        [(beat_best, beat_lane, _)] = entries
        beat_valid = register(m, tag["valid"], "beat_valid", reset_less=False)
        beat_best_q = register(m, beat_best, "beat_best_q")
        beat_row_q = register(m, tag["base"] + beat_lane, "beat_row_q", shape=row_base.shape())
        beat_last_q = register(m, tag["last"], "beat_last_q")
        best = Signal.like(beat.sums[0])
        best_row = Signal.like(row_base)
        first_beat = Signal(init=1)
        new_best = first_beat | (beat_best_q > best)
        m.d.comb += [tokens.put.eq(beat_valid & beat_last_q),
                     tokens.input.token.eq(Mux(new_best, beat_row_q, best_row))]
        with m.If(beat_valid):
            with m.If(new_best):
                m.d.sync += [best.eq(beat_best_q), best_row.eq(beat_row_q)]
            m.d.sync += first_beat.eq(beat_last_q)
        # The FIFO has room for every command in flight (IN_FLIGHT entries, one per writer
        # entry), so tokens.put never meets a full queue.

    def _elaborate_packer(self, m, scaler, writers, tokens):
        """Values of group ``g`` at lanes ``r mod V`` on of the word being filled; a write
        when it is full or the command ends; ``done`` once the last write is taken."""
        params = self._params
        lanes = params.vector_lanes
        lane_bits = max((lanes - 1).bit_length(), 1)
        entry = writers.payload
        values = scaler.values.payload
        word = Signal(data.ArrayLayout(signed(params.vector_bits), lanes))
        mask = Signal(lanes)
        row = Signal(range(params.weight_memory_words * self._max_segments + lanes))
        word_pending = Signal()          # word and mask hold a write not yet taken
        write_address = Signal.like(self.write.payload.address)
        command_ended = Signal()         # the head command's last values are in
        offset = row[:lane_bits] if lanes > 1 else 0
        placed = Signal.like(word)
        placed_mask = Signal(lanes)
        for lane in range(lanes):
            # Groups start at multiples of k, so lane j holds value j mod k.
            with m.Switch(entry.segments_log2):
                for log2 in range(self._max_segments.bit_length()):
                    with m.Case(log2):
                        m.d.comb += placed[lane].eq(values.values[lane % (1 << log2)])
            m.d.comb += placed_mask[lane].eq((lane >= offset) & (lane < offset + values.count))
        filled = (offset + values.count == lanes) | values.last
        write_free = ~word_pending | self.write.ready
        take_values = scaler.values.valid & writers.valid & write_free & ~command_ended
        m.d.comb += scaler.values.ready.eq(take_values)
        with m.If(word_pending & self.write.ready):
            m.d.sync += word_pending.eq(0)
        with m.If(take_values):
            for lane in range(lanes):
                with m.If(placed_mask[lane]):
                    m.d.sync += word[lane].eq(placed[lane])
            m.d.sync += [mask.eq(Mux(offset == 0, 0, mask) | placed_mask),
                         row.eq(Mux(values.last, 0, row + values.count))]
            with m.If(filled):
                m.d.sync += [word_pending.eq(~entry.no_write),
                             write_address.eq((entry.dst >> lane_bits) + (row >> lane_bits))]
            with m.If(values.last):
                m.d.sync += command_ended.eq(1)
        m.d.comb += [self.write.valid.eq(word_pending),
                     self.write.payload.address.eq(write_address),
                     self.write.payload.data.eq(word),
                     self.write.payload.mask.eq(mask)]

        finished = command_ended & ~word_pending & tokens.valid
        m.d.comb += [self.done.valid.eq(finished),
                     self.done.payload.token.eq(tokens.payload.token)]
        with m.If(finished & self.done.ready):
            m.d.comb += [writers.take.eq(1), tokens.take.eq(1)]
            m.d.sync += command_ended.eq(0)


class _Queue:
    """A :class:`~amaranth.lib.fifo.SyncFIFOBuffered` (or, unbuffered, a
    :class:`~amaranth.lib.fifo.SyncFIFO`, whose entries show a cycle sooner; ``bypassed``, with
    :func:`~.pipeline.bypass`: an entry put into an empty queue shows in the same cycle) seen
    through a layout: ``input`` and ``put``/``ready`` on the write side, ``payload`` and
    ``valid``/``take`` on the read side."""

    def __init__(self, m, name, layout, depth, *, buffered=True, bypassed=False):
        layout = data.Layout.cast(layout)
        kind = fifo.SyncFIFOBuffered if buffered else fifo.SyncFIFO
        m.submodules[name] = self.fifo = kind(width=layout.size, depth=depth)
        self.input = Signal(layout, name=f"{name}_input")
        self.put, self.take = Signal(name=f"{name}_put"), Signal(name=f"{name}_take")
        self.ready = self.fifo.w_rdy
        if not bypassed:
            self.payload = data.View(layout, self.fifo.r_data)
            self.valid = self.fifo.r_rdy
            m.d.comb += [self.fifo.w_data.eq(self.input), self.fifo.w_en.eq(self.put),
                         self.fifo.r_en.eq(self.take)]
            return
        self.valid, payload = bypass(m, self.fifo, self.put, self.input.as_value(), self.take)
        self.payload = data.View(layout, payload)

    def connect_input(self, m, port):
        """The queue's input from the component's ``In`` stream ``port``."""
        m.d.comb += [self.input.eq(port.payload), self.put.eq(port.valid & self.ready),
                     port.ready.eq(self.ready)]

    def connect_output(self, m, port):
        """The queue's output into a unit's ``In`` stream ``port``."""
        m.d.comb += [port.payload.eq(self.payload), port.valid.eq(self.valid),
                     self.take.eq(port.valid & port.ready)]
