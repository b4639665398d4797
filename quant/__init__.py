"""The MatMul-free language model in PyTorch: configuration, BitLinear, the model and its
Hugging Face checkpoints (see ``docs/model.md``)."""

if __name__ != "tern_fpga.quant":
    # The folder quant/ is the subpackage tern_fpga.quant: imported by its bare name it would
    # give a second copy of every module (two parameter classes, two error types).
    raise ImportError(f"import tern_fpga.quant, not {__name__}: the folder quant/ is installed "
                      f"as tern_fpga.quant (run `make setup`, or `pip install -e .`)")


from tern_fpga.quant.bitlinear import BitLinear, quantize_activations, round_half_away, ternarize
from tern_fpga.quant.checkpoint import CheckpointError, load_pretrained, save_pretrained
from tern_fpga.quant.config import ConfigError, HGRNBitConfig
from tern_fpga.quant.model import HGRNBitForCausalLM

__all__ = [
    "BitLinear", "CheckpointError", "ConfigError", "HGRNBitConfig", "HGRNBitForCausalLM",
    "load_pretrained", "quantize_activations", "round_half_away", "save_pretrained",
    "ternarize",
]
