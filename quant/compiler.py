"""Compiler: lowers an HGRNBit model to the accelerator's program, memory images and constants.

:func:`compile_model` takes a float model (``HGRNBitForCausalLM``) and an
:class:`~tern_fpga.contracts.params.AcceleratorParameters` and returns a :class:`CompiledModel`: the
program (a ``reset`` entry that clears the recurrent state and a ``step`` entry that runs one decode
step), the weight-memory image in the matrix unit's word layout, the vector-memory image (norm
weights, lower bounds; zeros for state and working buffers), the constant table, the embedding table
and a memory map. Nothing here is preset-specific: every size comes from the model's config and the
parameters, and a model that does not fit gets one :class:`DoesNotFitError` naming the memory,
the need and the room.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from tern_fpga.contracts import numerics
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.isa import FIELDS, SCALE_REGISTERS, Flag, Instruction, Opcode, encode
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.weight_layout import pack_weight_image
from tern_fpga.quant.bitlinear import BITLINEAR_NORM_EPS, ternarize
from tern_fpga.quant.model import HGRNBitForCausalLM
from tern_fpga.sim.golden.run_plan import vector_regions

__all__ = ["CompiledModel", "DoesNotFitError", "compile_model"]


class DoesNotFitError(TernError):
    """The model needs more of some accelerator resource than the parameters provide."""


@dataclass
class Region:
    name: str
    address: int
    length: int


@dataclass
class CompiledModel:
    """Everything the accelerator needs to run one model. See ``docs/isa.md``."""

    params: AcceleratorParameters
    model_config: dict
    program: list[Instruction]
    entry_points: dict[str, int]
    weight_image: np.ndarray | None   # uint8, the weight memory's bytes (None: layout only)
    weight_words: int
    vector_image: np.ndarray          # int32, the vector memory's initial contents
    constants: np.ndarray             # int64 constant table
    embeddings: np.ndarray            # int16 [vocab, d]
    embedding_shift: int
    memory_map: dict[str, list[int]]  # region name -> [address, length]
    matrices: dict[str, list[int]] = field(default_factory=dict)  # name -> [word, rows, beats]

    def sections(self) -> dict[str, np.ndarray]:
        """The arrays an export stores and the golden model and the board load."""
        return {
            "program": encode(self.program),
            "entry_points": np.array([self.entry_points["reset"], self.entry_points["step"]],
                                     dtype=np.uint32),
            "weights": self.weight_image,
            "vector_init": self.vector_image,
            "constants": self.constants,
            "embeddings": self.embeddings,
            "sigmoid_table": numerics.sigmoid_table(self.params).astype(np.int32),
            "rsqrt_table": numerics.rsqrt_table(self.params).astype(np.int32),
        }


class _Allocator:
    """Bump allocator for one memory, with a capacity check at the end. Regions start at
    multiples of ``alignment`` (the vector lanes: a region starts at a lane-0 element)."""

    def __init__(self, memory: str, capacity: int, unit: str, alignment: int, start: int = 0):
        self.memory, self.capacity, self.unit = memory, capacity, unit
        self.alignment = alignment
        self.regions: dict[str, Region] = {}
        self.start = self.next = start

    def take(self, name: str, length: int) -> Region:
        region = Region(name, self.next, length)
        self.regions[name] = region
        self.next += -(-length // self.alignment) * self.alignment
        return region

    def check(self, what: str):
        if self.next > self.capacity:
            raise DoesNotFitError(
                f"{what} needs {self.next - self.start} {self.unit} of {self.memory}, but the "
                f"preset has {self.capacity - self.start}; choose a larger preset or a smaller "
                f"model")


class _Builder:
    """Emits instructions and fills the memories for one model."""

    def __init__(self, model, params: AcceleratorParameters):
        self.model, self.params = model, params
        self.config = model.config
        self.d = self.config.hidden_size
        self.intermediate = self.config.resolved_intermediate_size
        self.vocab = self.config.vocab_size
        self.state = {k: v.detach().to(torch.float32) for k, v in model.state_dict().items()}
        # A model on the meta device has shapes but no values: lower the layout only.
        self.layout_only = any(v.is_meta for v in self.state.values())
        self.program: list[Instruction] = []
        # Buffers and state in the work bank; the norm weights in the constants bank, which
        # only operand b reads (the same allocator when the preset has no constants bank).
        self.vectors = _Allocator("vector memory" if params.vector_work_words == 0 else
                                  "the vector memory's work bank", params.work_words, "elements",
                                  params.vector_lanes)
        self.constant_vectors = self.vectors if params.vector_work_words == 0 else _Allocator(
            "the vector memory's constants bank", params.vector_memory_words, "elements",
            params.vector_lanes, start=params.work_words)
        self.vector_values: dict[int, np.ndarray] = {}
        self.constants: list[int] = []
        self.weight_codes: list[np.ndarray] = []
        self.weight_words = 0
        # Each BitLinear's QUANT takes the next scale register in turn, so that a QUANT need
        # not wait for the TMVs of the one before it to read theirs (the dataflow core's
        # scoreboard orders a QUANT after older TMVs of its buffer *or* its register).
        self.quants = 0
        self.matrices: dict[str, list[int]] = {}

    # Memories ---------------------------------------------------------------------------------

    def values(self, name: str) -> np.ndarray:
        tensor = self.state[name]
        return np.zeros(tensor.shape) if self.layout_only else tensor.double().numpy()

    def constant_vector(self, name: str, values) -> int:
        values = numerics.to_fixed(np.asarray(values, dtype=np.float64), self.params)
        region = self.constant_vectors.take(name, len(values))
        self.vector_values[region.address] = values
        return region.address

    def buffer(self, name: str, length: int) -> int:
        return self.vectors.take(name, length).address

    def norm_constants(self, length: int, eps: float, extra_factor: float = 1.0) -> int:
        """Constant-table index of ``[eps term, scale mantissa, scale exponent]`` for a norm
        over ``length`` elements (see ``numerics.rmsnorm``)."""
        g = self.params.sum_of_squares_frac_bits
        epsilon_term = round(eps * length * 2.0 ** g)
        scale = numerics.scale_from_float(math.sqrt(length) * 2.0 ** (g / 2) * extra_factor,
                                          self.params)
        index = len(self.constants)
        self.constants += [max(epsilon_term, 1), scale.mantissa, scale.exponent]
        return index

    def matrix(self, name: str) -> tuple[int, int, int, float]:
        """Place a BitLinear's ternary weights; returns (word address, rows, beats, mean|W|)."""
        weight = self.state[f"{name}.weight"]
        rows, columns = weight.shape
        if self.layout_only:
            w_t, s_w = None, 1.0
        else:
            w_t, s_w = ternarize(weight)
            w_t = w_t.numpy()
            if not 0 < s_w < math.inf:
                # finite weights (the loader checks) whose mean |W| overflows float32
                raise DoesNotFitError(
                    f"{name}'s weights are too large to ternarise: their mean magnitude "
                    f"{float(weight.double().abs().mean()):.3g} is beyond float32's range; the "
                    f"checkpoint is damaged or its training diverged")
        if columns > self.params.max_features or rows > (1 << 16) - 1:
            raise DoesNotFitError(
                f"{name} is {rows}x{columns}, but the preset takes at most "
                f"{self.params.max_features} input features (max_features)")
        beats = -(-columns // self.params.ternary_lanes)
        address = self.weight_words
        self.weight_codes.append(w_t)
        self.weight_words += rows * beats
        self.matrices[name] = [address, rows, beats]
        return address, rows, beats, 1.0 / s_w

    # Instructions -----------------------------------------------------------------------------

    def emit(self, opcode: Opcode, comment: str = "", **fields):
        self.program.append(Instruction(opcode, **fields, comment=comment))

    def bitlinear(self, name: str, source: int, length: int, *destinations: int,
                  flags: int = 0):
        """QUANT + TMV: ``destination = name(source)`` with the projection's own norm. With
        several destinations the output rows are split evenly between them, one TMV each
        (the GLU's gate and ``y`` halves), so that each half starts at an aligned address."""
        norm_weight = self.constant_vector(f"{name}.norm.weight",
                                           self.values(f"{name}.norm.weight"))
        address, rows, beats, mean_abs = self.matrix(name)
        constants = self.norm_constants(length, BITLINEAR_NORM_EPS,
                                        mean_abs / self.params.activation_max)
        register = self.quants % SCALE_REGISTERS
        self.quants += 1
        self.emit(Opcode.QUANT, name, dst=register, a=source, b=norm_weight, length=length,
                  imm=constants)
        part = rows // len(destinations)
        for index, destination in enumerate(destinations):
            self.emit(Opcode.TMV, name, dst=destination, a=beats, b=register, length=part,
                      imm=address + index * part * beats, flags=flags)

    def norm(self, name: str, source: int, destination: int, length: int):
        weight = self.constant_vector(name, self.values(name))
        self.emit(Opcode.NORM, name, dst=destination, a=source, b=weight, length=length,
                  imm=self.norm_constants(length, self.config.rms_norm_eps))

    def elementwise(self, opcode: Opcode, destination: int, a: int, b: int = 0,
                    length: int | None = None, comment: str = ""):
        self.emit(opcode, comment, dst=destination, a=a, b=b,
                  length=self.d if length is None else length)


def _embedding_table(weights: np.ndarray, params: AcceleratorParameters) -> tuple[np.ndarray, int]:
    """Embeddings of ``embedding_bits`` with one shared shift: ``x = table << shift`` is the
    Q.F vector. Stored as the smallest NumPy integer type that holds them."""
    high = (1 << (params.embedding_bits - 1)) - 1
    largest = float(np.abs(weights).max()) or 1.0
    fraction = min(params.frac_bits, math.floor(math.log2(high / largest)))
    dtype = np.int16 if params.embedding_bits <= 16 else np.int32
    table = np.clip(np.floor(weights * 2.0 ** fraction + 0.5), -high - 1, high).astype(dtype)
    return table, params.frac_bits - fraction


def compile_model(model, params: AcceleratorParameters) -> CompiledModel:
    """Lower ``model`` for the accelerator described by ``params``.

    Raises
    ------
    DoesNotFitError
        When a memory, the program or a matrix shape exceeds what ``params`` provides.
    """
    for memory, size, field_name in (("vector_memory_words", params.vector_memory_words, "dst"),
                                     ("weight_memory_words", params.weight_memory_words, "imm")):
        if size > 1 << FIELDS[field_name][1]:
            raise DoesNotFitError(
                f"{memory}={size} exceeds what the instruction set addresses "
                f"(2**{FIELDS[field_name][1]})")
    builder = _Builder(model, params)
    config, d, intermediate, vocab = builder.config, builder.d, builder.intermediate, \
        builder.vocab
    layers = config.num_hidden_layers
    b = builder

    lower_bounds = model.model.layer_lower_bounds()
    if lower_bounds is not None:
        lower_bounds = np.zeros(lower_bounds.shape) if b.layout_only else \
            lower_bounds.detach().double().numpy()

    state = [b.buffer(f"state.{layer}", d) for layer in range(layers)]
    x, xa = b.buffer("x", d), b.buffer("normed", d)
    i_buf, f_buf, g_buf, tmp = (b.buffer(name, d) for name in ("i", "f", "g", "tmp"))
    gate, up = b.buffer("gate", intermediate), b.buffer("up", intermediate)
    product = b.buffer("glu", intermediate)
    logits = b.buffer("logits", vocab)

    entry_points = {"reset": 0}
    for layer in range(layers):
        b.emit(Opcode.ZERO, f"layer {layer} state", dst=state[layer], length=d)
    b.emit(Opcode.HALT, "end of reset")
    entry_points["step"] = len(b.program)

    embeddings, embedding_shift = _embedding_table(
        b.values("model.embeddings.weight"), params)
    b.emit(Opcode.EMBED, "x = embedding[token]", dst=x, length=d, imm=embedding_shift)
    for layer in range(layers):
        p = f"model.layers.{layer}"
        # Token mixer (MLGRU).
        b.norm(f"{p}.attn_norm.weight", x, xa, d)
        for proj, buf in (("i_proj", i_buf), ("f_proj", f_buf), ("g_proj", g_buf)):
            b.bitlinear(f"{p}.attn.{proj}", xa, d, buf)
        b.elementwise(Opcode.SIGMOID, f_buf, f_buf, comment="f = sigmoid(f)")
        if layer > 0 and lower_bounds is not None:
            bound = lower_bounds[layer]
            b.elementwise(Opcode.MUL, f_buf, f_buf,
                          b.constant_vector(f"{p}.one_minus_lower_bound", 1 - bound),
                          comment="f = lb + (1 - lb) f")
            b.elementwise(Opcode.ADD, f_buf, f_buf,
                          b.constant_vector(f"{p}.lower_bound", bound))
        b.elementwise(Opcode.ONE_MINUS, tmp, f_buf, comment="1 - f")
        b.elementwise(Opcode.SILU, i_buf, i_buf, comment="silu(i)")
        b.elementwise(Opcode.MUL, i_buf, i_buf, tmp, comment="c = silu(i) (1 - f)")
        b.elementwise(Opcode.MUL, state[layer], state[layer], f_buf, comment="f h")
        b.elementwise(Opcode.ADD, state[layer], state[layer], i_buf, comment="h = f h + c")
        if config.output_gate == "paper":
            b.elementwise(Opcode.SIGMOID, g_buf, g_buf, comment="g = sigmoid(g)")
            b.elementwise(Opcode.MUL, g_buf, g_buf, state[layer], comment="g h")
            b.norm(f"{p}.attn.g_norm.weight", g_buf, g_buf, d)
        else:
            b.norm(f"{p}.attn.g_norm.weight", g_buf, g_buf, d)
            b.elementwise(Opcode.SILU, tmp, state[layer], comment="silu(h)")
            b.elementwise(Opcode.MUL, g_buf, g_buf, tmp, comment="o' = norm(g) silu(h)")
        b.bitlinear(f"{p}.attn.o_proj", g_buf, d, i_buf)
        b.elementwise(Opcode.ADD, x, x, i_buf, comment="residual")
        # Channel mixer (GLU).
        b.norm(f"{p}.mlp_norm.weight", x, xa, d)
        b.bitlinear(f"{p}.mlp.gate_proj", xa, d, gate, up)
        b.elementwise(Opcode.SILU, gate, gate, length=intermediate, comment="silu(gate)")
        b.elementwise(Opcode.MUL, product, gate, up, length=intermediate,
                      comment="silu(gate) y")
        b.bitlinear(f"{p}.mlp.down_proj", product, intermediate, i_buf)
        b.elementwise(Opcode.ADD, x, x, i_buf, comment="residual")
    b.norm("model.norm.weight", x, xa, d)
    b.bitlinear("lm_head", xa, d, logits, flags=Flag.ARGMAX)
    b.emit(Opcode.HALT, "end of step")

    b.vectors.check("the model's buffers and state")
    b.constant_vectors.check("the model's norm weights")
    if len(b.constants) > params.program_words:
        raise DoesNotFitError(
            f"the constant table has {len(b.constants)} entries, but the preset's constant "
            f"memory holds {params.program_words} (program_words)")
    if len(b.program) > params.program_words:
        raise DoesNotFitError(
            f"the program has {len(b.program)} instructions, but the preset's program memory "
            f"holds {params.program_words}; choose a larger preset or fewer layers")
    if b.weight_words > params.weight_memory_words:
        raise DoesNotFitError(
            f"the ternary weights need {b.weight_words} words of {params.ternary_lanes} "
            f"weights, but the preset's weight memory holds {params.weight_memory_words}; "
            f"choose a larger preset or a smaller model")
    if embeddings.size > params.embedding_memory_words:
        raise DoesNotFitError(
            f"the embeddings need {embeddings.size} elements, but the preset's embedding "
            f"memory holds {params.embedding_memory_words}")
    # Every buffer used whole (the dataflow core's scoreboard relies on it, docs/isa.md); a
    # ValueError here is a bug of this compiler, not of the model.
    vector_regions(b.program, params.vector_lanes)

    vector_image = np.zeros(max(b.vectors.next, b.constant_vectors.next), dtype=np.int32)
    for address, values in b.vector_values.items():
        vector_image[address:address + len(values)] = values
    return CompiledModel(
        params=params,
        model_config=config.to_dict(),
        program=b.program,
        entry_points=entry_points,
        weight_image=None if b.layout_only else pack_weight_image(b.weight_codes, params),
        weight_words=b.weight_words,
        vector_image=vector_image,
        constants=np.asarray(b.constants, dtype=np.int64),
        embeddings=embeddings,
        embedding_shift=embedding_shift,
        memory_map={r.name: [r.address, r.length] for allocator in
                    dict.fromkeys((b.vectors, b.constant_vectors))
                    for r in allocator.regions.values()},
        matrices=b.matrices,
    )


def compile_layout(config, params: AcceleratorParameters) -> CompiledModel:
    """Lower a model configuration without weights: the program, memory map and sizes only
    (used to check that a model fits a preset, and for the released models' shapes)."""

    with torch.device("meta"):
        model = HGRNBitForCausalLM(config)
    return compile_model(model, params)
