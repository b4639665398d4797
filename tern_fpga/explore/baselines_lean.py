"""A lean greedy decode of the MatMul-free model: the strongest CPU and GPU baselines' math.

The model as trained (:class:`~tern_fpga.quant.model.HGRNBitForCausalLM`) re-ternarises every
weight matrix at every step, builds Python lists of states and goes through ``nn.Module`` calls.
:class:`LeanDecoder` does the same arithmetic with everything that does not depend on the token
done once: the weights ternarised (``W_t / s_w`` in float32, or the integers ``W_t`` for a
low-precision matrix product), the layers' lower bounds computed, and one step written as a pure
function of ``(tokens [B], state [L, B, d]) -> (next tokens [B], state)``, which
``torch.compile`` can fuse and a CUDA graph can capture.

Two matrix-product modes (``matmul_dtype``):

- ``float32``: ``F.linear(y_q / s_x, W_t / s_w)``, the trained model's own operands, so the
  logits are the same numbers up to the matrix library's summation order;
- ``bfloat16`` / ``float16``: the integers ``y_q`` (|y_q| <= 127) and ``W_t`` are exact in either
  format; the product's float32 accumulation is rounded to that format on output (exact below
  256 in bfloat16, 2048 in float16), then divided by ``s_x * s_w`` in float32. Norms, gates,
  the recurrence and the state stay float32 in every mode.

Which tokens each mode gives against the float32 model is measured, not assumed
(:func:`first_difference`; ``baselines_gpu`` reports it).
"""

from __future__ import annotations

import dataclasses

import torch
from torch.nn import functional as F

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.tokenizer import encode
from tern_fpga.explore.report import Figure
from tern_fpga.quant.bitlinear import (
    ACTIVATION_SCALE_FLOOR,
    BITLINEAR_NORM_EPS,
    rms_norm,
    round_half_away,
    ternarize,
)
from tern_fpga.quant.model import HGRNBitForCausalLM

__all__ = ["MATMUL_DTYPES", "PROMPT", "LeanDecoder", "agreement_figure", "first_difference",
           "reference_tokens"]

PROMPT = "The ternary model "
MATMUL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                 "float16": torch.float16}


@dataclasses.dataclass(frozen=True)
class _Projection:
    """One BitLinear, ternarised: its input norm's weight, the matrix (``[out, in]``) and, in
    the integer modes, ``s_w`` (``None`` in float32 mode, where the matrix is ``W_t / s_w``)."""

    norm: torch.Tensor
    matrix: torch.Tensor
    weight_scale: torch.Tensor | None


def _projection(module, dtype: torch.dtype, device) -> _Projection:
    weights, scale = ternarize(module.weight.detach().float())
    norm = module.norm.weight.detach().float().to(device)
    if dtype == torch.float32:
        # The trained model's operand, computed as it computes it (_fake_ternarize).
        matrix = (weights.float() / torch.tensor(scale)).to(device)
        return _Projection(norm, matrix.contiguous(), None)
    return _Projection(norm, weights.to(dtype).to(device).contiguous(),
                       torch.tensor(scale, dtype=torch.float32, device=device))


class LeanDecoder:
    """Batch-``B`` greedy decoding of ``model`` with its weights ternarised once.

    Parameters
    ----------
    model : HGRNBitForCausalLM
        A float32 model (trained or random); read once, not kept.
    matmul_dtype : str
        ``"float32"``, ``"bfloat16"`` or ``"float16"`` (module docstring).
    device : str or torch.device

    Raises
    ------
    TernError
        If ``matmul_dtype`` is not one of :data:`MATMUL_DTYPES`.
    """

    def __init__(self, model: HGRNBitForCausalLM, matmul_dtype: str = "float32",
                 device="cpu"):
        if matmul_dtype not in MATMUL_DTYPES:
            raise TernError(f"matmul dtype {matmul_dtype!r} is not supported; use one of "
                            f"{', '.join(MATMUL_DTYPES)}")
        dtype = MATMUL_DTYPES[matmul_dtype]
        self.device = torch.device(device)
        self.matmul_dtype = matmul_dtype
        config = model.config
        self.config = config
        inner = model.model

        def vector(tensor):
            return tensor.detach().float().to(self.device)

        with torch.no_grad():
            self.embeddings = vector(inner.embeddings.weight)
            bounds = inner.layer_lower_bounds()
            self.lower_bounds = None if bounds is None else vector(bounds)
            self.layers = []
            for layer in inner.layers:
                attn, mlp = layer.attn, layer.mlp
                self.layers.append({
                    "attn_norm": vector(layer.attn_norm.weight),
                    "g_norm": vector(attn.g_norm.weight),
                    "mlp_norm": vector(layer.mlp_norm.weight),
                    **{name: _projection(getattr(attn, f"{name}_proj"), dtype, self.device)
                       for name in ("i", "f", "g", "o")},
                    "gate": _projection(mlp.gate_proj, dtype, self.device),
                    "down": _projection(mlp.down_proj, dtype, self.device)})
            self.final_norm = vector(inner.norm.weight)
            self.head = _projection(model.lm_head, dtype, self.device)
        self.eps = config.rms_norm_eps
        self.swish_gate = config.output_gate == "swish"

    @property
    def state_shape(self) -> tuple[int, int]:
        """``(layers, d)``: a state is ``[layers, batch, d]``."""
        return self.config.num_hidden_layers, self.config.hidden_size

    def _bitlinear(self, x: torch.Tensor, projection: _Projection) -> torch.Tensor:
        y = rms_norm(x, projection.norm, BITLINEAR_NORM_EPS)
        # activation_scale's true division 127 / peak, without its host-to-device copy of the
        # constant (a CUDA graph cannot capture one).
        peak = y.abs().amax(dim=-1, keepdim=True).clamp(min=ACTIVATION_SCALE_FLOOR)
        s_x = torch.full_like(peak, 127.0) / peak
        y_q = round_half_away(y * s_x).clamp(-128, 127)
        if projection.weight_scale is None:
            return F.linear(y_q / s_x, projection.matrix)
        product = F.linear(y_q.to(projection.matrix.dtype), projection.matrix).float()
        return product / (s_x * projection.weight_scale)

    def step(self, tokens: torch.Tensor, state: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per stream: ``tokens [B]`` (int64) and ``state [L, B, d]`` (float32) ->
        the greedy next tokens ``[B]`` and the new state (the given one is not modified)."""
        x = self.embeddings[tokens]
        states = []
        for index, layer in enumerate(self.layers):
            mixed_in = rms_norm(x, layer["attn_norm"], self.eps)
            f = torch.sigmoid(self._bitlinear(mixed_in, layer["f"]))
            if self.lower_bounds is not None and index > 0:
                bound = self.lower_bounds[index]
                f = bound + (1 - bound) * f
            c = F.silu(self._bitlinear(mixed_in, layer["i"])) * (1 - f)
            h = c + f * state[index]
            g = self._bitlinear(mixed_in, layer["g"])
            if self.swish_gate:
                o = rms_norm(g, layer["g_norm"], self.eps) * F.silu(h)
            else:
                o = rms_norm(torch.sigmoid(g) * h, layer["g_norm"], self.eps)
            residual = x + self._bitlinear(o, layer["o"])
            gate, value = self._bitlinear(rms_norm(residual, layer["mlp_norm"], self.eps),
                                          layer["gate"]).chunk(2, dim=-1)
            x = residual + self._bitlinear(F.silu(gate) * value, layer["down"])
            states.append(h)
        logits = self._bitlinear(rms_norm(x, self.final_norm, self.eps), self.head)
        return logits.argmax(dim=-1), torch.stack(states)

    def zero_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(self.state_shape[0], batch, self.state_shape[1],
                           device=self.device)

    def prime(self, prompt: str = PROMPT, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The first generated token and the state after ``prompt``, fed token by token
        through :meth:`step` (repeated for ``batch`` streams)."""
        ids = encode(prompt)
        state = self.zero_state(batch)
        with torch.inference_mode():
            for token in ids:
                tokens = torch.full((batch,), token, dtype=torch.long, device=self.device)
                next_tokens, state = self.step(tokens, state)
        return next_tokens, state

    def generate(self, count: int, prompt: str = PROMPT) -> list[int]:
        """``count`` greedy tokens after ``prompt`` (one stream, eager)."""
        token, state = self.prime(prompt)
        tokens = []
        with torch.inference_mode():
            for _ in range(count):
                tokens.append(int(token[0]))
                token, state = self.step(token, state)
        return tokens


def reference_tokens(model: HGRNBitForCausalLM, count: int, prompt: str = PROMPT,
                     device="cpu") -> list[int]:
    """``count`` greedy tokens of the model as trained (float32, ``model.generate``)."""
    ids = torch.tensor([encode(prompt)], device=device)
    with torch.inference_mode():
        out = model.to(device).generate(ids, count)
    return [int(token) for token in out[0, ids.shape[1]:]]


def agreement_figure(name: str, tokens: list[int], reference: list[int], what: str, notes: str,
                     machine: str, source: str) -> Figure:
    """``<name>.tokens_same_as_float32`` (measured): how many of ``tokens`` equal ``reference``
    (the float32 model as trained) before the first difference; ``what`` says which tokens
    against which model ("greedy tokens equal to the float32 model as trained")."""
    first = first_difference(tokens, reference)
    # The difference's cause is not known here: docs/benchmarks.md has what was investigated.
    where = "" if first is None else (f"; the first difference is token {first} (why a step "
                                      f"can differ: docs/benchmarks.md)")
    return Figure(f"{name}.tokens_same_as_float32", len(reference) if first is None else first,
                  "tokens", "measured", source,
                  f"{what}, of the first {len(reference)}{where}; {notes}", machine)


def first_difference(tokens: list[int], reference: list[int]) -> int | None:
    """Index of the first token that differs from ``reference`` (``None``: all agree over the
    shorter length)."""
    return next((index for index, (a, b) in enumerate(zip(tokens, reference, strict=False))
                 if a != b), None)
