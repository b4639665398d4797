"""Where the golden model's error on one random block comes from: integer recipe or float noise.

One MatMul-free block with random weights is run four ways on the same tokens: the PyTorch
fake-quant model in float64 (the reference), the same model in float32 (the noise floor of
float arithmetic), the float64 model with its embeddings perturbed by a relative noise ``eps``
(how strongly the block amplifies a small input error), and the golden integer model (with the
shipped parameters, or others for a prototype). Each is compared with the reference on the
residual stream after the block, token by token, and on its int8 activations, quantiser by
quantiser: an activation that differs is a *flip* (one rounding boundary crossed).

Finding (docs/numerics.md, "Error at 370M shapes"): the int8 quantisers turn any input error
above about 1e-6 (relative) into flips, each flip moves the next projection's every row by a
step (2 % flipped in ``o_proj``'s input flip a quarter of ``gate_proj``'s), and the block's
output error then sits at 2-4 % whatever the first error was. Float32 (errors of 1e-7) stays below that threshold on most tokens; the golden
model's Q15.16 format (resolution 1.5e-5, relative 1e-4 on the embeddings) does not.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from tern_fpga.contracts.isa import Opcode
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.quant.bitlinear import BitLinear, quantize_activations
from tern_fpga.quant.compiler import compile_model
from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.quant.model import HGRNBitForCausalLM
from tern_fpga.sim.golden.model import GoldenModel

__all__ = ["PROTOTYPE_PRECISION", "BlockNoiseResult", "block_noise", "random_block"]

# The quantisers of one block, in program order (the golden model's QUANTs follow it).
QUANTISERS = ("i_proj", "f_proj", "g_proj", "o_proj", "gate_proj", "down_proj")
# A prototype, not the shipped recipe: float32-like precision in every step, at which the
# golden model flips activations only where float64 itself is within 1e-6 of a rounding
# boundary (docs/numerics.md, "Error at 370M shapes").
PROTOTYPE_PRECISION = {"frac_bits": 24, "embedding_bits": 24, "sigmoid_table_bits": 12,
                       "scale_mantissa_bits": 24, "reciprocal_bits": 24,
                       "rsqrt_newton_steps": 3}


def random_block(hidden_size: int, intermediate_size: int, seed: int = 0) -> HGRNBitForCausalLM:
    """One block with random weights: latent weights and embeddings normal(0, 0.05) (trained
    micro and demo embeddings have an rms of 0.044-0.053), norm weights uniform(0.5, 1.5)."""

    torch.manual_seed(seed)
    config = HGRNBitConfig(vocab_size=256, hidden_size=hidden_size, num_hidden_layers=1,
                           intermediate_size=intermediate_size)
    model = HGRNBitForCausalLM(config)
    with torch.no_grad():  # away from the initialisation: norm weights and scales vary
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
            elif parameter.dim() == 2:
                parameter.normal_(0, 0.05)
    return model


@dataclass
class _Run:
    residuals: list[np.ndarray] = field(default_factory=list)    # per token, after the block
    activations: list[list[np.ndarray]] = field(default_factory=list)  # per token, per QUANT


def _float_run(model, dtype: torch.dtype, tokens: list[int], noise: float = 0.0) -> _Run:
    """Step a copy of ``model`` in ``dtype``; ``noise`` multiplies the embeddings by
    ``1 + noise * normal`` (a fixed generator) before the conversion."""
    model = copy.deepcopy(model)
    if noise:
        with torch.no_grad():
            embeddings = model.model.embeddings.weight.double()
            generator = torch.Generator().manual_seed(1)
            embeddings *= 1 + noise * torch.randn(embeddings.shape, generator=generator,
                                                  dtype=torch.float64)
            model = model.double()
            model.model.embeddings.weight.copy_(embeddings)
    model = model.to(dtype).eval()
    run, captured = _Run(), {}

    def capture(name):
        def hook(module, inputs, output):
            captured[name] = quantize_activations(module.norm(inputs[0]))[0].reshape(-1)
        return hook

    # By name: the model calls f_proj before i_proj, the program quantises i_proj's input first.
    hooks = [module.register_forward_hook(capture(name.rsplit(".", 1)[-1]))
             for name, module in model.named_modules() if isinstance(module, BitLinear)]
    state = model.initial_state(1, dtype=dtype)
    try:
        with torch.no_grad():
            for token in tokens:
                _, state, hidden = model.step_with_hidden_states(torch.tensor([token]), state)
                run.residuals.append(hidden[1][0].double().numpy())
                run.activations.append([captured[name].numpy().astype(np.int64)
                                        for name in QUANTISERS])
    finally:
        for hook in hooks:
            hook.remove()
    return run


def _golden_run(model, params: AcceleratorParameters, tokens: list[int]) -> _Run:
    compiled = compile_model(model, params)
    golden = GoldenModel(params, compiled.sections(), trace=True)
    x_address = compiled.memory_map["x"][0]
    run = _Run()
    for token in tokens:
        golden.step(token)
        residual_adds = [r.written for r in golden.trace
                         if r.instruction.opcode == Opcode.ADD and r.instruction.dst == x_address]
        run.residuals.append(residual_adds[1] / params.one)  # the block's second residual add
        run.activations.append([r.written for r in golden.trace
                                if r.instruction.opcode == Opcode.QUANT][:len(QUANTISERS)])
    return run


@dataclass
class BlockNoiseResult:
    """Per token: ``|x - x_64| / |x_64|`` of the residual stream after the block; per
    quantiser: the fraction of int8 activations that differ from float64's (over all tokens).

    A token whose error is nonzero beyond float rounding has at least one flip; the medians
    over tokens are what ``make bench`` reports."""

    tokens: int
    golden_error: list[float]
    float32_error: list[float]
    perturbed_error: dict[float, list[float]]    # float64 with relative noise on the embeddings
    prototype_error: list[float] | None          # the golden model with PROTOTYPE_PRECISION
    golden_flips: dict[str, float]
    float32_flips: dict[str, float]

    @staticmethod
    def median(errors: list[float]) -> float:
        return float(np.median(errors))


def _compare(run: _Run, reference: _Run) -> tuple[list[float], dict[str, float]]:
    errors = [float(np.linalg.norm(x - r) / np.linalg.norm(r))
              for x, r in zip(run.residuals, reference.residuals)]
    flips = {name: float(np.mean([np.mean(q[index] != r[index]) for q, r in
                                  zip(run.activations, reference.activations)]))
             for index, name in enumerate(QUANTISERS)}
    return errors, flips


def block_noise(model, params: AcceleratorParameters, tokens: list[int],
                noise_levels: tuple[float, ...] = (1e-6, 1e-5, 1e-4),
                prototype: bool = True) -> BlockNoiseResult:
    """Run ``model`` (one block) the four ways on ``tokens`` and compare with float64."""

    if model.config.num_hidden_layers != 1:
        raise ValueError(f"block_noise compares one block; the model has "
                         f"{model.config.num_hidden_layers} layers (use random_block)")
    reference = _float_run(model, torch.float64, tokens)
    golden_error, golden_flips = _compare(_golden_run(model, params, tokens), reference)
    float32_error, float32_flips = _compare(_float_run(model, torch.float32, tokens), reference)
    perturbed = {eps: _compare(_float_run(model, torch.float64, tokens, eps), reference)[0]
                 for eps in noise_levels}
    prototype_error = None
    if prototype:
        finer = dataclasses.replace(params, **PROTOTYPE_PRECISION)
        prototype_error = _compare(_golden_run(model, finer, tokens), reference)[0]
    return BlockNoiseResult(len(tokens), golden_error, float32_error, perturbed,
                            prototype_error, golden_flips, float32_flips)
