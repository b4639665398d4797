"""Accelerator parameters: the single source of truth for widths, sizes and numeric formats.

One frozen :class:`AcceleratorParameters` object is handed whole to the Amaranth components
(``hw/``), the NumPy golden model (``sim/``), the compiler and exporter (``quant/``), the host
driver (``host/``) and the tests. Nothing re-derives a width in a second place: if a width is
needed, it is a field or a property here.

Presets (see :data:`PRESETS`):

``demo``
    ULX3S ECP5-85F: the byte-level demo model (d=128, 4 layers, ~1.1 M ternary weights) held
    wholly in block RAM.
``micro``
    The byte-level micro model (d=64, 4 layers): the small ULX3S build. Meant for the
    iCEBreaker (iCE40UP5K), which this design does not fit (``docs/boards.md``).
``micro-dataflow``
    ``micro``'s sizes on issue 15's dataflow core (``docs/dataflow.md``) on the ULX3S, at the
    clock that core's routed design meets: the first bitstream of that core.
``stdlib``
    ULX3S ECP5-85F with its 32 MB SDRAM: the byte-level stdlib model (d=512, 6 layers, I=1536,
    20.6 M ternary weights), whose weights do not fit block RAM and stream from the SDRAM
    (``docs/sdram.md``); its embeddings are in the SDRAM too.
``large``
    Simulation only: memories that hold one d=512 block and every shape of the released 370M
    model, for the paper comparison.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

__all__ = ["PRESETS", "AcceleratorParameters", "preset"]


@dataclasses.dataclass(frozen=True)
class AcceleratorParameters:
    """Geometry and numerics of one accelerator build.

    Parameters
    ----------
    name : str
        Preset name, recorded in exports and manifests.
    ternary_lanes : int
        ``P``: ternary multiply-accumulates per cycle in the matrix unit; also the number of
        2-bit weights in one weight-memory word. A power of two, 8 to 1024.
    vector_lanes : int
        ``V``: elements per cycle in the row-wise and norm units. A power of two.
    activation_bits : int
        Width of quantised activations (int8 in the model).
    frac_bits : int
        Fractional bits of the vector fixed-point format (signed, ``vector_bits`` wide).
    vector_bits : int
        Width of one vector-scratchpad element.
    scale_mantissa_bits : int
        Width of the unsigned mantissa of per-token scales (see ``docs/numerics.md``).
    sigmoid_table_bits : int
        log2 of the number of sigmoid table segments.
    sigmoid_input_range : int
        The sigmoid table covers ``[-range, +range)``; outside it the sigmoid saturates.
    rsqrt_table_bits : int
        log2 of the number of entries of the reciprocal-square-root seed table.
    rsqrt_newton_steps : int
        Newton-Raphson refinements after the table seed.
    reciprocal_bits : int
        Extra bits of the per-token reciprocal ``127 / max|u|`` used by the quantiser.
    square_shift : int
        Right shift of each square ``x**2`` (format ``2 * frac_bits``) before the sum of squares,
        so that the sum fits 64 bits; squares saturate at ``2**square_saturation_bits - 1``.
    weight_memory_words : int
        Depth of the weight memory in ``P``-weight words.
    vector_memory_words : int
        Depth of the vector scratchpad in elements.
    vector_work_words : int
        Elements of the scratchpad's work bank (addresses below this): state, buffers and
        results, readable by both operands. The rest is the constants bank (norm weights),
        which only operand ``b`` reads, so the hardware stores it once. 0: no constants bank.
    embedding_memory_words : int
        Elements of the embedding table, ``vocab * d``.
    embedding_bits : int
        Width of one embedding element (signed, one shared shift per model).
    program_words : int
        Depth of the instruction memory.
    max_features : int
        The largest vector length (``d``, ``I`` or ``2I``) a matrix instruction may take.
    clock_hz : int
        Target clock of the core.
    """

    name: str
    ternary_lanes: int
    vector_lanes: int
    activation_bits: int = 8
    frac_bits: int = 16
    vector_bits: int = 32
    scale_mantissa_bits: int = 16
    sigmoid_table_bits: int = 8
    sigmoid_input_range: int = 16
    rsqrt_table_bits: int = 6
    rsqrt_newton_steps: int = 2
    reciprocal_bits: int = 16
    square_shift: int = 8
    weight_memory_words: int = 1 << 14
    vector_memory_words: int = 1 << 12
    vector_work_words: int = 0
    embedding_memory_words: int = 1 << 15
    embedding_bits: int = 16
    program_words: int = 1 << 10
    max_features: int = 1 << 11
    clock_hz: int = 50_000_000

    def __post_init__(self):
        def power_of_two(name, value, low, high):
            if not (isinstance(value, int) and low <= value <= high and value & (value - 1) == 0):
                raise ValueError(
                    f"{name} must be a power of two from {low} to {high}, not {value!r}")

        power_of_two("ternary_lanes", self.ternary_lanes, 8, 1024)
        power_of_two("vector_lanes", self.vector_lanes, 1, 256)
        if self.activation_bits != 8:
            raise ValueError(
                f"activation_bits must be 8 (the model's int8 activations), "
                f"not {self.activation_bits!r}")
        if not 8 <= self.frac_bits < self.vector_bits - 4:
            raise ValueError(
                f"frac_bits must be from 8 to vector_bits - 5 = {self.vector_bits - 5}, "
                f"not {self.frac_bits!r}")
        range_ = self.sigmoid_input_range
        if not (isinstance(range_, int) and range_ > 0 and range_ & (range_ - 1) == 0):
            raise ValueError(f"sigmoid_input_range must be a power of two, not {range_!r}")
        if self.sigmoid_segment_shift < 0:
            raise ValueError(
                f"sigmoid_table_bits={self.sigmoid_table_bits} is finer than the vector format "
                f"resolves; use at most {self.sigmoid_table_bits + self.sigmoid_segment_shift}")
        for field in ("weight_memory_words", "vector_memory_words", "embedding_memory_words",
                      "program_words", "max_features"):
            value = getattr(self, field)
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{field} must be a positive integer, not {value!r}")
        work = self.vector_work_words
        if not (isinstance(work, int) and 0 <= work <= self.vector_memory_words
                and work % self.vector_lanes == 0):
            raise ValueError(
                f"vector_work_words must be a multiple of vector_lanes from 0 to "
                f"vector_memory_words = {self.vector_memory_words}, not {work!r}")

    # Derived widths -------------------------------------------------------------------------

    @property
    def activation_max(self) -> int:
        """Largest quantised activation magnitude (127 for int8)."""
        return (1 << (self.activation_bits - 1)) - 1

    @property
    def accumulator_bits(self) -> int:
        """Signed width that holds any ternary dot product over ``max_features`` int8 values.

        The sum of ``n`` terms each in ``[-128, 128]`` lies in ``[-128 n, 128 n]``.
        """
        return math.ceil(math.log2(128 * self.max_features + 1)) + 1

    @property
    def square_saturation_bits(self) -> int:
        """Each shifted square saturates below ``2**this``, so a sum of ``max_features`` of them
        stays below ``2**62``."""
        return 62 - math.ceil(math.log2(self.max_features))

    @property
    def sum_of_squares_frac_bits(self) -> int:
        """Fractional bits of the sum of squares."""
        return 2 * self.frac_bits - self.square_shift

    @property
    def sigmoid_segment_shift(self) -> int:
        """log2 of the width of one sigmoid table segment, in LSBs of the vector format."""
        return self.frac_bits + (2 * self.sigmoid_input_range).bit_length() - 1 \
            - self.sigmoid_table_bits

    @property
    def weight_word_bits(self) -> int:
        """Bits in one weight-memory word: ``P`` weights of 2 bits."""
        return 2 * self.ternary_lanes

    @property
    def work_words(self) -> int:
        """Elements of the vector memory's work bank (all of it without a constants bank)."""
        return self.vector_work_words or self.vector_memory_words

    @property
    def one(self) -> int:
        """The fixed-point value 1.0 in the vector format."""
        return 1 << self.frac_bits

    # Identity -------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> AcceleratorParameters:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown accelerator parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**fields)

    @property
    def hash(self) -> int:
        """64-bit hash of every field; a bitstream and an export must agree on it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True).encode()
        return int.from_bytes(hashlib.sha256(canonical).digest()[:8], "little")

    def replace(self, **changes) -> AcceleratorParameters:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, AcceleratorParameters] = {
    "demo": AcceleratorParameters(
        # P=128, V=8: a 256-bit weight word, the whole model in 8,448 of them. Routes on the
        # ULX3S (static placer, nextpnr seed 3; 2026-11-29) in the same 198 of 208 block RAMs
        # and 110 of 156 multipliers as P=64, and takes 35 % fewer cycles a token (14,351
        # against 21,995): the TMVs, two thirds of a token's cycles at P=64, take half as long.
        name="demo", ternary_lanes=128, vector_lanes=8,
        weight_memory_words=8448, vector_memory_words=11 * 1024, vector_work_words=4 * 1024,
        embedding_memory_words=256 * 128, program_words=512, max_features=1024,
        # 25 MHz, the ULX3S's own oscillator; the routed build reaches 33.5 MHz (nextpnr).
        clock_hz=25_000_000),
    "micro": AcceleratorParameters(
        name="micro", ternary_lanes=32, vector_lanes=2,
        weight_memory_words=9 * 1024, vector_memory_words=5632, vector_work_words=2 * 1024,
        embedding_memory_words=256 * 64, program_words=1024, max_features=512,
        # 20 MHz: the ECP5's PLL makes it exactly from the ULX3S's 25 MHz (24 MHz it cannot),
        # the iCE40's from the iCEBreaker's 12 MHz within 0.7 %.
        clock_hz=20_000_000),
    "micro-dataflow": AcceleratorParameters(
        # micro's sizes on the dataflow core (Board.dataflow_presets): its own preset because
        # the clock is part of the parameters' hash, and a bitstream and an export must agree
        # on it. 35 MHz: the core alone routes at 73.6 MHz (docs/dataflow.md), but the whole
        # board design at 41.9 MHz when asked for 50 and 38.9 when asked for 40 (nextpnr, seed
        # 1, 2026-12-08): its critical path is the host link's protocol engine (the runner's
        # token count through a reply header's sum into the status), which the committed
        # designs share; a faster board needs a faster engine or the link in a slower domain.
        name="micro-dataflow", ternary_lanes=32, vector_lanes=2,
        weight_memory_words=9 * 1024, vector_memory_words=5632, vector_work_words=2 * 1024,
        embedding_memory_words=256 * 64, program_words=1024, max_features=512,
        clock_hz=35_000_000),
    "stdlib": AcceleratorParameters(
        # P=16: a 32-bit weight word is two of the SDRAM's 16-bit words, and the SDRAM gives
        # one a cycle at best, so a wider matrix unit would only wait. V=4: the element-wise
        # work is about 1 % of a token's 2.6 M cycles. The weight memory is 28 MB of the
        # SDRAM's 32 (7 M words of 32 bits; the stdlib model takes 1,286,144), the embeddings
        # (256 KB) follow it there.
        name="stdlib", ternary_lanes=16, vector_lanes=4,
        weight_memory_words=7 << 20, vector_memory_words=52 * 1024, vector_work_words=12 * 1024,
        embedding_memory_words=256 * 512, program_words=512, max_features=1536,
        # 25 MHz: the SDRAM and the core share the clock (the PLL adds the SDRAM's 90-degree
        # shifted clock); the ULX3S designs close at 33-38 MHz today.
        clock_hz=25_000_000),
    "large": AcceleratorParameters(
        name="large", ternary_lanes=512, vector_lanes=32,
        weight_memory_words=1 << 23, vector_memory_words=1 << 21, vector_work_words=1 << 18,
        embedding_memory_words=1 << 27, program_words=1 << 13, max_features=1 << 14,
        clock_hz=100_000_000),
}


def preset(name: str) -> AcceleratorParameters:
    """The named preset, or a ``ValueError`` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
