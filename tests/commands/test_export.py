"""``tern export`` of a damaged checkpoint: one line that names the bad value, in seconds, and
no file written."""

import json
import os
import shutil
import time

import pytest


@pytest.fixture
def damaged(tmp_path, checkpoint):
    """``damaged(weights=..., **config)``: a copy of the checkpoint with one weight tensor
    filled with ``weights`` and config values replaced."""
    from safetensors.torch import load_file, save_file  # here: loads torch

    def make(weights=None, **config):
        folder = tmp_path / "ck"
        shutil.copytree(checkpoint, folder)
        if weights is not None:
            state = load_file(folder / "model.safetensors")
            state["model.layers.0.attn.i_proj.weight"].fill_(weights)
            save_file(state, folder / "model.safetensors")
        values = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**values, **config}))
        return folder
    return make


@pytest.mark.parametrize("weights, config, message", [
    (float("nan"), {}, ("model.layers.0.attn.i_proj.weight in {ck} holds 4,096 value(s) that "
                       "are NaN or infinite (as float32); the checkpoint is damaged or its "
                       "training diverged: use an earlier or re-downloaded checkpoint")),
    (3e38, {}, ("model.layers.0.attn.i_proj's weights are too large to ternarise: their mean "
               "magnitude 3e+38 is beyond float32's range; the checkpoint is damaged or its "
               "training diverged")),
    (None, {"num_hidden_layers": 20_000},
     ("{ck}/config.json: num_hidden_layers is 20,000, more than any model this implementation "
     "runs (at most 1,024): the config is damaged")),
    (None, {"num_hidden_layers": 900},
     ("weights in {ck} do not match its config.json: num_hidden_layers is 900 but the weights "
     "hold 1 layer(s)")),
])
def test_a_damaged_checkpoint_is_one_line(tmp_path, damaged, one_line_error, weights, config,
                                          message):
    folder = damaged(weights, **config)
    start = time.perf_counter()
    error = one_line_error(1, "export", folder, "--preset", "micro", "-o",
                           tmp_path / "model.tern")
    assert error.startswith(message.format(ck=folder)), error
    assert time.perf_counter() - start < 10
    assert sorted(os.listdir(tmp_path)) == ["ck"]
