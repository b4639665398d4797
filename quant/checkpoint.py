"""Read and write Hugging Face checkpoint folders of the MatMul-free LM.

A folder holds ``config.json`` (``"model_type": "hgrn_bit"``) and the weights as one of
``model.safetensors``, sharded safetensors named by ``model.safetensors.index.json``, or
``pytorch_model.bin`` (read with ``torch.load(weights_only=True)``: no pickled code runs), the
BitLinear weights either as latent floats or packed as ternary values
(:mod:`tern_fpga.quant.packed_checkpoint`). The
released checkpoints store bf16; weights are converted to the requested dtype. Every problem
raises :class:`CheckpointError` with one message that names the file, key or value at fault.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import re

import torch
from safetensors.torch import load_file, save_file

from tern_fpga.contracts.errors import TernError
from tern_fpga.quant.config import ConfigError, HGRNBitConfig
from tern_fpga.quant.model import HGRNBitForCausalLM
from tern_fpga.quant.packed_checkpoint import is_packed_state, unpack_state

__all__ = ["CheckpointError", "load_pretrained", "save_pretrained"]

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
PYTORCH_NAME = "pytorch_model.bin"
# How many keys an error lists before it says "and N more".
LISTED_KEYS = 10
_LAYER_KEY = re.compile(r"model\.layers\.(\d+)\.")


class CheckpointError(TernError):
    """A checkpoint folder that cannot be loaded as this model."""


def _listing(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:LISTED_KEYS])
    more = len(keys) - LISTED_KEYS
    return shown + (f" and {more} more" if more > 0 else "")


def _first_line(error: Exception) -> str:
    # Library errors can span lines; the CLI prints one.
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _read_safetensors(path: pathlib.Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device="cpu")
    except Exception as error:  # noqa: BLE001 -- safetensors raises several unrelated types on bad input
        raise CheckpointError(f"{path} is not a readable safetensors file "
                              f"({_first_line(error)}); "
                              f"re-download or re-save the checkpoint") from None


def _read_sharded_safetensors(folder: pathlib.Path) -> dict[str, torch.Tensor]:
    index_path = folder / SAFETENSORS_INDEX_NAME
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        shards = set(weight_map.values())
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{index_path} is not a safetensors index with a 'weight_map' "
                              f"object ({error!r})") from None
    for shard in shards:
        if not isinstance(shard, str) or pathlib.Path(shard).name != shard:
            raise CheckpointError(f"{index_path} names shard {shard!r}, which is not a plain "
                                  f"file name inside the checkpoint folder")
    state = {}
    for shard in sorted(shards):
        shard_path = folder / shard
        if not shard_path.is_file():
            keys = [key for key, name in weight_map.items() if name == shard]
            raise CheckpointError(f"{index_path} names shard {shard!r} (for {_listing(keys)}), "
                                  f"but {shard_path} does not exist")
        tensors = _read_safetensors(shard_path)
        misplaced = [key for key in tensors if weight_map.get(key) != shard]
        if misplaced:
            raise CheckpointError(f"shard {shard_path} holds {_listing(misplaced)}, which "
                                  f"{index_path} does not assign to it")
        state.update(tensors)
    return state


def _read_pytorch_bin(path: pathlib.Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} is not a readable PyTorch weights file: it pickles "
                              f"objects other than tensors and containers, which are never "
                              f"unpickled here (weights_only=True); convert it to "
                              f"safetensors where you trust it") from None
    except Exception as error:  # noqa: BLE001 -- a damaged file fails in many types
        raise CheckpointError(f"{path} is not a readable PyTorch weights file (loaded with "
                              f"weights_only=True): {_first_line(error)}") from None
    if not isinstance(state, dict) or not all(isinstance(key, str) and
                                              isinstance(value, torch.Tensor)
                                              for key, value in state.items()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to "
                              f"tensors)")
    return state


def _read_weights(folder: pathlib.Path) -> dict[str, torch.Tensor]:
    if (folder / SAFETENSORS_NAME).is_file():
        return _read_safetensors(folder / SAFETENSORS_NAME)
    if (folder / SAFETENSORS_INDEX_NAME).is_file():
        return _read_sharded_safetensors(folder)
    if (folder / PYTORCH_NAME).is_file():
        return _read_pytorch_bin(folder / PYTORCH_NAME)
    raise CheckpointError(f"checkpoint folder {folder} holds no weights: expected "
                          f"{SAFETENSORS_NAME}, {SAFETENSORS_INDEX_NAME} or {PYTORCH_NAME}")


def _check_layer_count(folder, state, config):
    """The config's layer count against the weights', before a model of that many layers is
    built (a damaged count of 20,000 would take minutes and gigabytes to find otherwise)."""
    layers = {int(match.group(1)) for key in state if (match := _LAYER_KEY.match(key))}
    count = config.num_hidden_layers
    # Without any layer key the weights are named otherwise: the key check says how.
    if layers and (len(layers) != count or max(layers) != count - 1):
        raise CheckpointError(f"weights in {folder} do not match its config.json: "
                              f"num_hidden_layers is {count:,} but the weights hold "
                              f"{len(layers)} layer(s) (model.layers.N, N from {min(layers)} to "
                              f"{max(layers)}); "
                              f"correct config.json or use the weights it was saved with")


def _converted(folder, state, dtype) -> dict:
    """The weights in ``dtype``, each checked to be finite there (NaN or infinity in a weight
    makes every later step, ternarisation and export included, meaningless)."""
    converted = {}
    for key, tensor in sorted(state.items()):
        value = tensor.to(dtype).contiguous()
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise CheckpointError(f"{key} in {folder} holds {bad:,} value(s) that are NaN or "
                                  f"infinite (as {str(dtype).removeprefix('torch.')}); the "
                                  f"checkpoint is damaged or its training diverged: use an "
                                  f"earlier or re-downloaded checkpoint")
        converted[key] = value
    return converted


def _check_state(folder, state, expected):
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if problems:
        raise CheckpointError(f"weights in {folder} do not match its config.json: "
                              + "; ".join(problems))
    for key, tensor in sorted(state.items()):
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"shape mismatch for {key} in {folder}: config.json implies "
                                  f"{list(expected[key].shape)}, the checkpoint holds "
                                  f"{list(tensor.shape)}")
        if not tensor.is_floating_point():
            raise CheckpointError(f"{key} in {folder} has dtype {tensor.dtype}; "
                                  f"floating-point weights are expected")


def load_pretrained(path: str | os.PathLike,
                    dtype: torch.dtype = torch.float32) -> HGRNBitForCausalLM:
    """Load a Hugging Face checkpoint folder as an :class:`HGRNBitForCausalLM` on the CPU.

    Parameters
    ----------
    path : str or os.PathLike
        The folder holding ``config.json`` and the weights.
    dtype : torch.dtype
        Dtype of the returned model's parameters (bf16 checkpoints are converted).

    Raises
    ------
    CheckpointError
        If the folder or its config is missing, the config is not an ``hgrn_bit`` config or
        holds an unsupported value, the weights file is unreadable or missing (a shard named by
        the index included), the weights' layer count, keys or shapes differ from what the
        config implies, or a weight is NaN or infinite. Never another exception type, whatever
        the files hold.
    """
    folder = pathlib.Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist (or is not a folder)")
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"checkpoint folder {folder} has no {CONFIG_NAME}")
    try:
        config = HGRNBitConfig.from_json_file(config_path)
    except ConfigError as error:
        raise CheckpointError(f"{config_path}: {error}") from None
    state = _read_weights(folder)
    _check_layer_count(folder, state, config)
    # Build on the meta device: no time spent on a random initialisation that is overwritten.
    with torch.device("meta"):
        model = HGRNBitForCausalLM(config)
    if is_packed_state(state):  # ternary values, 2 bits each (packed_checkpoint)
        try:
            state = unpack_state(folder, state, {key: value.shape for key, value in
                                                 model.state_dict().items()})
        except TernError as error:
            raise CheckpointError(str(error)) from None
    _check_state(folder, state, model.state_dict())
    model.load_state_dict(_converted(folder, state, dtype), assign=True)
    return model


def save_pretrained(model: HGRNBitForCausalLM, path: str | os.PathLike):
    """Write ``config.json`` and ``model.safetensors`` (in the model's dtype) to ``path``,
    creating the folder if needed."""
    folder = pathlib.Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in
             model.state_dict().items()}
    dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
    model.config.to_json_file(folder / CONFIG_NAME, torch_dtype=dtype)
    save_file(state, folder / SAFETENSORS_NAME, metadata={"format": "pt"})
