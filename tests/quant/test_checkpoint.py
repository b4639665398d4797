"""Hugging Face checkpoint folders: every accepted format, and every promised error."""

import json
import time

import pytest
import torch
from safetensors.torch import save_file

from tern_fpga.quant.checkpoint import CheckpointError, load_pretrained, save_pretrained
from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.quant.model import HGRNBitForCausalLM

SMALL = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2}


@pytest.fixture
def model():
    torch.manual_seed(0)
    model = HGRNBitForCausalLM(HGRNBitConfig(**SMALL))
    with torch.no_grad():
        model.model.lower_bounds.normal_()
        model.lm_head.norm.weight.uniform_(0.5, 1.5)
    return model


@pytest.fixture
def ids():
    return torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(1))


def write_config(folder, **values):
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**SMALL, "model_type": "hgrn_bit",
                                                    **values}))


def assert_same_model(loaded, model, ids):
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_round_trip(tmp_path, model, ids):
    model.save_pretrained(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json",
                                                                   "model.safetensors"]
    assert json.loads((tmp_path / "out/config.json").read_text())["torch_dtype"] == "float32"
    assert_same_model(load_pretrained(tmp_path / "out"), model, ids)


def test_round_trip_paper_gate_and_float64(tmp_path, ids):
    torch.manual_seed(2)
    model = HGRNBitForCausalLM(HGRNBitConfig(**SMALL, output_gate="paper")).double()
    save_pretrained(model, tmp_path)
    loaded = load_pretrained(tmp_path, dtype=torch.float64)
    assert loaded.config.output_gate == "paper"
    assert loaded.lm_head.weight.dtype == torch.float64
    assert_same_model(loaded, model, ids)


def test_bfloat16_checkpoint(tmp_path, model, ids):
    write_config(tmp_path, torch_dtype="bfloat16", architectures=["HGRNBitForCausalLM"])
    state = {key: value.to(torch.bfloat16) for key, value in model.state_dict().items()}
    save_file(state, tmp_path / "model.safetensors")
    loaded = load_pretrained(tmp_path)
    assert loaded.lm_head.weight.dtype == torch.float32
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value.float()), key


def write_sharded(folder, model, shard_names=("model-00001-of-00002.safetensors",
                                             "model-00002-of-00002.safetensors")):
    write_config(folder)
    keys = sorted(model.state_dict())
    weight_map = {key: shard_names[index % 2] for index, key in enumerate(keys)}
    for shard in set(weight_map.values()):
        save_file({key: value for key, value in model.state_dict().items()
                   if weight_map[key] == shard}, folder / shard)
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": 0}, "weight_map": weight_map}))


def test_sharded_safetensors(tmp_path, model, ids):
    write_sharded(tmp_path, model)
    assert_same_model(load_pretrained(tmp_path), model, ids)


def test_pytorch_bin(tmp_path, model, ids):
    write_config(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    assert_same_model(load_pretrained(tmp_path), model, ids)


class Payload:
    """Unpickling this would run ``exec`` and create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def test_pytorch_bin_never_runs_pickled_code(tmp_path, model):
    write_config(tmp_path)
    marker = tmp_path / "executed"
    state = {**model.state_dict(), "payload": Payload(marker)}
    torch.save(state, tmp_path / "pytorch_model.bin")
    message = error_of(tmp_path)
    assert "pytorch_model.bin is not a readable PyTorch weights file: it pickles objects " \
        "other than tensors" in message
    assert "\n" not in message
    assert not marker.exists()


def save_state(folder, state, **config):
    write_config(folder, **config)
    save_file(state, folder / "model.safetensors")


def error_of(folder):
    with pytest.raises(CheckpointError) as info:
        load_pretrained(folder)
    return str(info.value)


def test_error_folder_missing(tmp_path):
    assert error_of(tmp_path / "nowhere") == (f"checkpoint folder {tmp_path / 'nowhere'} does "
                                              f"not exist (or is not a folder)")


def test_error_config_missing(tmp_path, model):
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    assert error_of(tmp_path) == f"checkpoint folder {tmp_path} has no config.json"


def test_error_config_not_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    assert "config.json' is not valid JSON" in error_of(tmp_path)


def test_error_wrong_model_type(tmp_path, model):
    save_state(tmp_path, model.state_dict(), model_type="llama")
    assert "model_type is 'llama'; only 'hgrn_bit'" in error_of(tmp_path)


def test_error_unsupported_config_value(tmp_path, model):
    save_state(tmp_path, model.state_dict(), use_short_conv=True)
    message = error_of(tmp_path)
    assert message.startswith(str(tmp_path / "config.json"))
    assert "unsupported config value use_short_conv=true" in message


def test_error_no_weights(tmp_path):
    write_config(tmp_path)
    assert "holds no weights: expected model.safetensors" in error_of(tmp_path)


def test_error_missing_keys(tmp_path, model):
    state = model.state_dict()
    del state["lm_head.norm.weight"], state["model.layers.1.attn.g_norm.weight"]
    save_state(tmp_path, state)
    assert error_of(tmp_path).endswith("missing keys: lm_head.norm.weight, "
                                       "model.layers.1.attn.g_norm.weight")


def test_error_unexpected_keys(tmp_path, model):
    state = {**model.state_dict(), "model.layers.0.attn.q_conv1d.weight": torch.ones(32, 4)}
    save_state(tmp_path, state)
    assert error_of(tmp_path).endswith("unexpected keys: model.layers.0.attn.q_conv1d.weight")


def test_error_lists_many_keys_briefly(tmp_path, model):
    state = {"model." + key: value for key, value in model.state_dict().items()}
    save_state(tmp_path, state)
    message = error_of(tmp_path)
    assert "missing keys: lm_head.norm.weight, lm_head.weight, " in message
    assert f"and {len(state) - 10} more; unexpected keys: model.lm_head.norm.weight" in message


def test_error_shape_mismatch(tmp_path, model):
    state = model.state_dict()
    state["model.layers.1.mlp.down_proj.weight"] = torch.ones(32, 128)
    save_state(tmp_path, state)
    assert error_of(tmp_path) == (f"shape mismatch for model.layers.1.mlp.down_proj.weight in "
                                  f"{tmp_path}: config.json implies [32, 256], the checkpoint "
                                  f"holds [32, 128]")


def test_error_corrupt_safetensors(tmp_path, model):
    write_config(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    assert "model.safetensors is not a readable safetensors file" in error_of(tmp_path)


def test_error_corrupt_bin(tmp_path):
    write_config(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"definitely not a zip or a pickle")
    assert "pytorch_model.bin is not a readable PyTorch weights file" in error_of(tmp_path)


def test_error_index_names_missing_shard(tmp_path, model):
    write_sharded(tmp_path, model)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    message = error_of(tmp_path)
    assert "names shard 'model-00002-of-00002.safetensors' (for " in message
    assert message.endswith("model-00002-of-00002.safetensors does not exist")


def test_error_index_names_path_outside_folder(tmp_path, model):
    write_sharded(tmp_path, model, shard_names=("../elsewhere.safetensors",
                                                "model-2.safetensors"))
    assert "names shard '../elsewhere.safetensors', which is not a plain file name" in \
        error_of(tmp_path)


@pytest.mark.parametrize("value, dtype", [(float("nan"), torch.float32),
                                          (float("inf"), torch.float32),
                                          (1e300, torch.float64)])  # infinite as float32
def test_error_non_finite_weights(tmp_path, model, value, dtype):
    state = {key: tensor.to(dtype) for key, tensor in model.state_dict().items()}
    state["model.layers.1.attn.i_proj.weight"][3, :2] = value
    save_state(tmp_path, state)
    assert error_of(tmp_path) == (
        f"model.layers.1.attn.i_proj.weight in {tmp_path} holds 2 value(s) that are NaN or "
        f"infinite (as float32); the checkpoint is damaged or its training diverged: use an "
        f"earlier or re-downloaded checkpoint")


def test_error_layer_count_found_before_the_model_is_built(tmp_path, model):
    save_state(tmp_path, model.state_dict(), num_hidden_layers=1000)
    start = time.perf_counter()
    assert error_of(tmp_path) == (
        f"weights in {tmp_path} do not match its config.json: num_hidden_layers is 1,000 but "
        f"the weights hold 2 layer(s) (model.layers.N, N from 0 to 1); correct config.json or "
        f"use the weights it was saved with")
    assert time.perf_counter() - start < 1.0  # building 1,000 layers takes seconds


@pytest.mark.parametrize("key, value, message", [
    ("num_hidden_layers", 20_000, ("num_hidden_layers is 20,000, more than any model this "
                                  "implementation runs (at most 1,024): the config is damaged")),
    ("hidden_size", 1 << 40, "hidden_size is 1,099,511,627,776, more than any model"),
    ("rms_norm_eps", float("inf"), "rms_norm_eps must be a positive finite number, not inf"),
    ("initializer_range", -1, "initializer_range must be a positive finite number, not -1"),
    ("use_lower_bound", "yes", 'use_lower_bound must be true or false, not "yes"'),
    ("pad_token_id", 0.0, ("pad_token_id must be null or a token id below vocab_size 64, "
                          "not 0.0")),
])
def test_error_damaged_config_values(tmp_path, model, key, value, message):
    save_state(tmp_path, model.state_dict(), **{key: value})
    assert error_of(tmp_path).startswith(f"{tmp_path / 'config.json'}: {message}")
