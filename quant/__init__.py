"""The MatMul-free language model in PyTorch: configuration, BitLinear, the model and its
Hugging Face checkpoints (see ``docs/model.md``)."""

from quant.bitlinear import BitLinear, quantize_activations, round_half_away, ternarize
from quant.checkpoint import CheckpointError, load_pretrained, save_pretrained
from quant.config import ConfigError, HGRNBitConfig
from quant.model import HGRNBitForCausalLM

__all__ = [
    "BitLinear", "CheckpointError", "ConfigError", "HGRNBitConfig", "HGRNBitForCausalLM",
    "load_pretrained", "quantize_activations", "round_half_away", "save_pretrained",
    "ternarize",
]
