"""Hostile checkpoint folders: whatever config.json and model.safetensors hold, loading ends in
a model or in one CheckpointError line, never another exception, and in well under a second."""

import json
import struct
import time
import warnings

import pytest
import torch

from tern_fpga.quant.checkpoint import CheckpointError, load_pretrained
from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.quant.model import HGRNBitForCausalLM

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

SMALL = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2}
# Every key the loader reads, and a few it does not know.
CONFIG_KEYS = [*(field for field in HGRNBitConfig.__dataclass_fields__), "model_type",
               "architectures", "unknown_key"]


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """The small checkpoint's config (a dict) and weights file (bytes)."""
    folder = tmp_path_factory.mktemp("checkpoint")
    torch.manual_seed(0)
    HGRNBitForCausalLM(HGRNBitConfig(**SMALL)).save_pretrained(folder)
    load_pretrained(folder)  # the undamaged checkpoint loads
    return json.loads((folder / "config.json").read_text()), \
        (folder / "model.safetensors").read_bytes()


JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70_000), st.integers(-2 ** 70, 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["F16", "BF16", "F64", "I32", "U8", "BOOL", "F8_E4M3", "hgrn_bit", "swish"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=6)


def _replace_some(draw, value, keys=()):
    """``value`` (a JSON object) with one to three entries, anywhere in it, replaced."""
    value = json.loads(json.dumps(value))
    for _ in range(draw(st.integers(1, 3))):
        if keys and draw(st.booleans()):
            value[draw(st.sampled_from(keys))] = draw(JSON_VALUES)
            continue
        target = value
        while isinstance(target, (dict, list)) and target and draw(st.booleans()):
            key = draw(st.sampled_from(list(target) if isinstance(target, dict)
                                       else range(len(target))))
            if not isinstance(target[key], (dict, list)):
                break
            target = target[key]
        if isinstance(target, dict) and target:
            target[draw(st.sampled_from(list(target)))] = draw(JSON_VALUES)
        elif isinstance(target, list) and target:
            target[draw(st.integers(0, len(target) - 1))] = draw(JSON_VALUES)
    return value


@st.composite
def damaged(draw, original):
    """A config and a weights file, one of them damaged: config values, the safetensors
    header's entries (dtype, shape, offsets; its length prefix kept right), its bytes (NaN and
    infinity among them) or its first bytes."""
    config, weights = original
    length = struct.unpack_from("<Q", weights)[0]
    header, data = json.loads(weights[8:8 + length]), bytearray(weights[8 + length:])
    where = draw(st.sampled_from(["config", "header", "data", "prefix"]))
    if where == "config":
        config = _replace_some(draw, config, CONFIG_KEYS)
    elif where == "header":
        text = json.dumps(_replace_some(draw, header)).encode()
        weights = struct.pack("<Q", len(text)) + text + bytes(data)
    else:
        weights = bytearray(weights)
        low = 8 + length if where == "data" else 0
        high = len(weights) - 1 if where == "data" else 8 + length
        for _ in range(draw(st.integers(1, 16))):
            weights[draw(st.integers(low, high))] = draw(st.integers(0, 255))
    return json.dumps(config), bytes(weights)


def test_any_damage_is_one_checkpoint_error(original, tmp_path):
    @hypothesis.settings(max_examples=300, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(damaged(original))
    def load_anything(files):
        config, weights = files
        (tmp_path / "config.json").write_text(config)
        (tmp_path / "model.safetensors").write_bytes(weights)
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "ignoring unknown config keys"
                load_pretrained(tmp_path)
        except CheckpointError as error:
            assert "\n" not in str(error)
        assert time.perf_counter() - start < 2.0

    load_anything()
