"""Packed checkpoints: each BitLinear weight stored as its ternary values, 2 bits a weight.

A float32 checkpoint keeps the latent weights that training updates: 4 bytes a weight, 80 MB for
the 20 M-weight ``stdlib`` model. Inference needs only what the forward pass makes of them,
``W_t / s_w`` (:func:`~tern_fpga.quant.bitlinear.ternarize`). A packed ``model.safetensors``
stores, for each BitLinear ``NAME``:

``NAME.weight.ternary``
    ``uint8 [ceil(n / 4)]``: the ``n`` ternary values in row-major order, packed by the
    project's one 2-bit code, :func:`tern_fpga.contracts.packing.pack_2bit`: four to a byte,
    value ``i`` in bits ``2 * (i % 4)`` and up, codes ``00`` -> 0, ``01`` -> +1, ``11`` -> -1
    (``10`` is invalid), a last byte padded with zero weights.
``NAME.weight.scale``
    ``float32 [1]``: ``s_w`` as the CPU computes it from the latent weights in float32.

and every other tensor as it was (float32). The file's metadata has ``"tern.weights":
"ternary-2bit"`` (the loader does not read it; files written before the code became
the contract's, with ``10`` for -1, are refused as holding the invalid code ``10``).
:func:`~tern_fpga.quant.checkpoint.load_pretrained` reads it like any
checkpoint: it rebuilds latent weights ``W' ~ c * W_t`` (one weight's magnitude tuned) so that,
in float32 on the loading machine, ``weight_scale(W')`` is ``s_w`` to the bit and
``ternarize(W')`` is ``W_t``.
The loaded model's forward pass in float32 is then the trained model's, value for value; only
further training differs (the latent weights are gone).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
from safetensors.torch import save_file

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.packing import pack_2bit, unpack_2bit
from tern_fpga.quant.bitlinear import BitLinear, ternarize, weight_scale

__all__ = ["PACKED_FORMAT", "is_packed_state", "save_packed", "unpack_state"]

PACKED_FORMAT = "ternary-2bit"
TERNARY_SUFFIX = ".weight.ternary"
# Factors ``c`` tried, one float32 ulp apart around n / (nonzero * s_w).
_FACTOR_TRIES = 64
SCALE_SUFFIX = ".weight.scale"


def _float32_bits(value: float) -> int:
    return int(np.float32(value).view(np.int32))


def _latent_weights(values: torch.Tensor, scale: float) -> torch.Tensor:
    """Float32 weights whose ``ternarize`` is ``(values, scale)`` here, to the bit.

    All non-zero weights are ``+-c`` with ``c = n / (nonzero * scale)`` (so the mean magnitude
    is ``1 / scale``), except the first, whose magnitude is found by bisection over its float32
    bit patterns: the float32 mean moves in steps of its last bit as that one weight changes, so
    the mean that gave ``scale`` is reached exactly. Every magnitude stays within
    ``[0.6 c, 2 c]``, where ternarisation gives +-1.
    """
    target = torch.tensor(scale, dtype=torch.float32)
    flat_values = values.reshape(-1)
    nonzero = torch.nonzero(flat_values)
    if len(nonzero) == 0:
        return torch.zeros(values.shape, dtype=torch.float32)
    first = int(nonzero[0])
    sign = float(flat_values[first])
    guess = np.float32(values.numel() / (len(nonzero) * scale))
    # Rounding in the float32 sum can step over the target mean for one factor ``c``; the
    # neighbouring factors round differently.
    for offset in range(_FACTOR_TRIES):
        factor = float(guess + np.float32(offset // 2 * (-1) ** offset) * np.spacing(guess))
        weights = flat_values.to(torch.float32) * factor

        def scale_with(bits: int, weights=weights) -> torch.Tensor:
            weights[first] = sign * float(np.int32(bits).view(np.float32))
            return weight_scale(weights)

        # The scale falls as the magnitude grows: the smallest magnitude whose scale is at
        # most the target.
        low, high = _float32_bits(0.6 * factor), _float32_bits(2 * factor)
        if scale_with(low) < target or scale_with(high) > target:
            continue
        while low < high:
            middle = (low + high) // 2
            if scale_with(middle) <= target:
                high = middle
            else:
                low = middle + 1
        if scale_with(low) == target:
            return weights.reshape(values.shape)
    raise ValueError(f"no float32 weights found that give weight scale {scale!r} exactly")


def unpack_state(folder, state: dict[str, torch.Tensor],
                 shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """A packed state dict with each ``NAME.weight.ternary`` / ``.scale`` pair replaced by
    latent float32 weights ``NAME.weight`` of the shape in ``shapes``.

    Raises
    ------
    TernError
        If a pair is incomplete, names a weight the model does not have, or holds bad data.
    """
    result = {key: value for key, value in state.items()
              if not key.endswith((TERNARY_SUFFIX, SCALE_SUFFIX))}
    for key in sorted(k for k in state if k.endswith(TERNARY_SUFFIX)):
        name = key.removesuffix(".ternary")
        scale_key = name + ".scale"
        if scale_key not in state:
            raise TernError(f"packed checkpoint {folder} has {key} but no {scale_key}")
        if name not in shapes:
            raise TernError(f"packed checkpoint {folder} has {key}, but the model of its "
                            f"config.json has no weight {name}")
        shape = shapes[name]
        try:
            values = torch.from_numpy(
                unpack_2bit(state[key].reshape(-1).numpy(), math.prod(shape))).reshape(shape)
            result[name] = _latent_weights(values, float(state[scale_key].reshape(-1)[0]))
        except (ValueError, RuntimeError, IndexError) as error:
            raise TernError(f"packed weight {key} in {folder} cannot be read: {error}") from None
    orphans = [k for k in state if k.endswith(SCALE_SUFFIX)
               and k.removesuffix(".scale") + ".ternary" not in state]
    if orphans:
        raise TernError(f"packed checkpoint {folder} has {orphans[0]} but no "
                        f"{orphans[0].removesuffix('.scale')}.ternary")
    return result


def is_packed_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict holds packed weights (any ``NAME.weight.ternary`` key)."""
    return any(key.endswith(TERNARY_SUFFIX) for key in state)


def save_packed(model, path) -> dict:
    """Write ``config.json`` and a packed ``model.safetensors`` of ``model`` (float32, on the
    CPU) to ``path``; returns ``{"ternary_weights": n, "bytes": size of the weights file}``."""
    # here, not at the top: tern_fpga.quant.checkpoint imports this module
    from tern_fpga.quant.checkpoint import CONFIG_NAME, SAFETENSORS_NAME

    folder = pathlib.Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu().float()
    state = {key: tensor.detach().contiguous() for key, tensor in model.state_dict().items()}
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, BitLinear):
            values, scale = ternarize(module.weight.detach())
            del state[f"{name}.weight"]
            state[f"{name}{TERNARY_SUFFIX}"] = torch.from_numpy(pack_2bit(values.reshape(-1).numpy()))
            state[f"{name}{SCALE_SUFFIX}"] = torch.tensor([scale], dtype=torch.float32)
            count += values.numel()
    model.config.to_json_file(folder / CONFIG_NAME, torch_dtype="float32")
    save_file(state, folder / SAFETENSORS_NAME,
              metadata={"format": "pt", "tern.weights": PACKED_FORMAT})
    return {"ternary_weights": count, "bytes": (folder / SAFETENSORS_NAME).stat().st_size}
