"""The MatMul-free language model in PyTorch: configuration, BitLinear, the model and its
Hugging Face checkpoints (see ``docs/model.md``)."""

if __name__ != "tern_fpga.quant":
    # The folder quant/ is the subpackage tern_fpga.quant: imported by its bare name it would
    # give a second copy of every module (two parameter classes, two error types).
    raise ImportError(f"import tern_fpga.quant, not {__name__}: the folder quant/ is installed "
                      f"as tern_fpga.quant (run `make setup`, or `pip install -e .`)")


import importlib

__all__ = [
    "BitLinear", "CheckpointError", "ConfigError", "HGRNBitConfig", "HGRNBitForCausalLM",
    "load_pretrained", "quantize_activations", "round_half_away", "save_pretrained",
    "ternarize",
]

# The names above load on first use (PEP 562), so that the torch-free modules of this package
# (config, presets, data) import without torch: `tern golden` and `tern --help` never load it.
_HOME = {"BitLinear": "bitlinear", "quantize_activations": "bitlinear",
         "round_half_away": "bitlinear", "ternarize": "bitlinear",
         "CheckpointError": "checkpoint", "load_pretrained": "checkpoint",
         "save_pretrained": "checkpoint", "ConfigError": "config", "HGRNBitConfig": "config",
         "HGRNBitForCausalLM": "model"}


def __getattr__(name):
    if name in _HOME:
        return getattr(importlib.import_module(f"tern_fpga.quant.{_HOME[name]}"), name)
    raise AttributeError(f"module 'tern_fpga.quant' has no attribute {name!r}")
