"""A small randomly initialised HGRN-Bit model, for tests of the compiler and the golden model."""

import torch

from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.quant.model import HGRNBitForCausalLM


def random_model(seed, d=64, layers=2, output_gate="swish"):
    torch.manual_seed(seed)
    config = HGRNBitConfig(vocab_size=256, hidden_size=d, num_hidden_layers=layers,
                           output_gate=output_gate)
    model = HGRNBitForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial lower bounds, so that the lb mix is exercised
        model.model.lower_bounds.normal_(0, 1)
    return model
