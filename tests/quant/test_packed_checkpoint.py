"""Packed (2-bit ternary) checkpoints: exact ternary values and scales after a round trip."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from tern_fpga.contracts.packing import pack_2bit
from tern_fpga.quant.bitlinear import BitLinear, ternarize
from tern_fpga.quant.checkpoint import CheckpointError, load_pretrained, save_pretrained
from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.quant.model import HGRNBitForCausalLM
from tern_fpga.quant.packed_checkpoint import save_packed


@pytest.fixture
def model():
    torch.manual_seed(0)
    config = HGRNBitConfig(vocab_size=256, hidden_size=32, num_hidden_layers=2,
                           intermediate_size=64)
    result = HGRNBitForCausalLM(config)
    with torch.no_grad():  # away from the initialisation, as after training
        for parameter in result.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return result.eval()


def test_packed_model_has_the_same_ternary_weights_and_tokens(model, tmp_path):
    save_pretrained(model, tmp_path / "float")
    info = save_packed(model, tmp_path / "packed")
    assert info["bytes"] < (tmp_path / "float" / "model.safetensors").stat().st_size / 3  # the embeddings stay float32
    loaded = load_pretrained(tmp_path / "packed").eval()
    for (name, a), (_, b) in zip(model.named_modules(), loaded.named_modules()):
        if isinstance(a, BitLinear):
            (values_a, scale_a), (values_b, scale_b) = ternarize(a.weight), ternarize(b.weight)
            assert torch.equal(values_a, values_b) and scale_a == scale_b, name
    prompt = torch.tensor([list(b"def f(x):")])
    with torch.no_grad():
        assert torch.allclose(model(prompt).logits, loaded(prompt).logits, atol=1e-4)
        assert torch.equal(model.generate(prompt, 32), loaded.generate(prompt, 32))


def test_packed_weights_use_the_contract_2bit_code(model, tmp_path):
    save_packed(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    weight = model.model.layers[0].attn.i_proj.weight
    values, _ = ternarize(weight.detach())
    stored = state["model.layers.0.attn.i_proj.weight.ternary"]
    assert stored.dtype == torch.uint8
    assert stored.numpy().tobytes() == pack_2bit(values.reshape(-1).numpy()).tobytes()
    # -1 is code 11, never 10
    assert ((stored.numpy()[:, None] >> [0, 2, 4, 6]) & 3 == 3).any()


def test_code_10_is_refused(model, tmp_path):
    """Code 10 is invalid in the contract's code (it was -1 in an older packed format)."""
    save_packed(model, tmp_path)
    path = tmp_path / "model.safetensors"
    state = load_file(path)
    key = "model.layers.0.attn.i_proj.weight.ternary"
    state[key][0] = 0b10
    save_file(state, path)
    with pytest.raises(CheckpointError, match="i_proj.weight.ternary.*invalid code 10"):
        load_pretrained(tmp_path)


def test_packed_weight_without_scale_is_refused(model, tmp_path):
    save_packed(model, tmp_path)
    path = tmp_path / "model.safetensors"
    state = load_file(path)
    del state["model.layers.0.attn.i_proj.weight.scale"]
    save_file(state, path)
    with pytest.raises(CheckpointError, match="i_proj.weight.scale"):
        load_pretrained(tmp_path)


def test_shipped_stdlib_checkpoint_is_packed_and_loads():
    from tern_fpga.contracts import paths
    from tern_fpga.quant.presets import get_preset

    folder = paths.CHECKPOINTS / "stdlib"
    assert (folder / "model.safetensors").stat().st_size < 10_000_000
    model = load_pretrained(folder)
    assert model.config.to_dict() == get_preset("stdlib").config().to_dict()
    weights = [m.weight for m in model.modules() if isinstance(m, BitLinear)]
    assert sum(w.numel() for w in weights) == 20_578_304
    values, scale = ternarize(weights[0].detach())
    assert set(values.unique().tolist()) == {-1, 0, 1} and scale > 1
