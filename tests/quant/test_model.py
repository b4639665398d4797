"""HGRNBitForCausalLM against MODEL.md: keys, sizes, a NumPy forward, recurrence, gradients."""

import json
import math
import warnings

import numpy as np
import pytest
import torch

from tern_fpga.quant.config import ConfigError, HGRNBitConfig
from tern_fpga.quant.model import HGRNBitForCausalLM, linear_recurrence

from support.bitlinear import numpy_bitlinear

SMALL = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2}


def random_model(seed=0, dtype=torch.float64, **overrides):
    """A small model whose norms and lower bounds are random too (they start as ones/zeros)."""
    torch.manual_seed(seed)
    model = HGRNBitForCausalLM(HGRNBitConfig(**{**SMALL, **overrides}))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.uniform_(0.5, 1.5)
            elif name == "model.lower_bounds":
                parameter.normal_()
    return model.to(dtype)


def expected_shapes(d, i, v, layers):
    shapes = {"model.embeddings.weight": (v, d), "model.lower_bounds": (layers, d),
              "model.norm.weight": (d,), "lm_head.weight": (v, d), "lm_head.norm.weight": (d,)}
    for n in range(layers):
        prefix = f"model.layers.{n}."
        shapes[prefix + "attn_norm.weight"] = (d,)
        shapes[prefix + "mlp_norm.weight"] = (d,)
        shapes[prefix + "attn.g_norm.weight"] = (d,)
        for name in ("i_proj", "f_proj", "g_proj", "o_proj"):
            shapes[f"{prefix}attn.{name}.weight"] = (d, d)
            shapes[f"{prefix}attn.{name}.norm.weight"] = (d,)
        shapes[prefix + "mlp.gate_proj.weight"] = (2 * i, d)
        shapes[prefix + "mlp.gate_proj.norm.weight"] = (d,)
        shapes[prefix + "mlp.down_proj.weight"] = (d, i)
        shapes[prefix + "mlp.down_proj.norm.weight"] = (i,)
    return shapes


def test_state_dict_keys_and_shapes():
    model = HGRNBitForCausalLM(HGRNBitConfig(**SMALL))
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes == expected_shapes(32, 256, 64, 2)
    assert model.config.resolved_intermediate_size == 256


@pytest.mark.parametrize("layers, d, intermediate, parameters", [
    (24, 1024, 2816, 374_108_160),
    (24, 2048, 5632, 1_364_779_008),
    (32, 2560, 6912, 2_702_357_504),
])
def test_released_sizes(layers, d, intermediate, parameters):
    config = HGRNBitConfig(hidden_size=d, num_hidden_layers=layers)
    assert config.resolved_intermediate_size == intermediate
    with torch.device("meta"):
        model = HGRNBitForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == parameters
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes == expected_shapes(d, intermediate, 32000, layers)


def test_config_defaults():
    assert HGRNBitConfig().to_dict() == {
        "vocab_size": 32000, "hidden_size": 2048, "num_hidden_layers": 24,
        "attn_mode": "fused_recurrent", "num_heads": 1, "expand_ratio": 1,
        "use_short_conv": False, "conv_size": 4, "share_conv_kernel": True,
        "use_lower_bound": True, "hidden_ratio": 4, "intermediate_size": None,
        "hidden_act": "swish", "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
        "use_cache": True, "pad_token_id": None, "bos_token_id": 1, "eos_token_id": 2,
        "tie_word_embeddings": False, "initializer_range": 0.02, "model_type": "hgrn_bit"}
    assert HGRNBitConfig.model_type == "hgrn_bit"
    assert HGRNBitConfig(hidden_size=64, intermediate_size=100).resolved_intermediate_size == 100


def test_config_json_round_trip(tmp_path):
    config = HGRNBitConfig(**SMALL, output_gate="paper", intermediate_size=96)
    config.to_json_file(tmp_path / "config.json")
    values = json.loads((tmp_path / "config.json").read_text())
    assert values["architectures"] == ["HGRNBitForCausalLM"]
    assert values["output_gate"] == "paper"
    assert HGRNBitConfig.from_json_file(tmp_path / "config.json") == config
    assert "output_gate" not in HGRNBitConfig(**SMALL).to_dict()


def test_config_ignores_hugging_face_keys():
    values = {**SMALL, "model_type": "hgrn_bit", "architectures": ["HGRNBitForCausalLM"],
              "torch_dtype": "bfloat16", "transformers_version": "4.40.2",
              "fuse_cross_entropy": True}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert HGRNBitConfig.from_dict(values) == HGRNBitConfig(**SMALL)
    with pytest.warns(UserWarning, match="unknown config keys.*'rope_theta'"):
        HGRNBitConfig.from_dict({**SMALL, "model_type": "hgrn_bit", "rope_theta": 10000})


@pytest.mark.parametrize("key, value, message", [
    ("use_short_conv", True, ("use_short_conv=true: this implementation supports "
                             "use_short_conv in {false} only")),
    ("num_heads", 4, "num_heads=4"),
    ("num_heads", None, "num_heads=null"),
    ("expand_ratio", 2, "expand_ratio=2"),
    ("hidden_act", "gelu", ('hidden_act="gelu": this implementation supports hidden_act in '
                           '{"swish", "silu"} only')),
    ("attn_mode", "parallel", 'attn_mode="parallel"'),
    ("tie_word_embeddings", True, "tie_word_embeddings=true"),
    ("output_gate", "sigmoid", 'output_gate="sigmoid"'),
    ("hidden_size", 0, "hidden_size must be a positive integer, not 0"),
    ("model_type", "llama", "model_type is 'llama'; only 'hgrn_bit'"),
    ("model_type", None, "model_type is None; only 'hgrn_bit'"),
])
def test_config_unsupported_values(key, value, message):
    with pytest.raises(ConfigError) as info:
        HGRNBitConfig.from_dict({**SMALL, "model_type": "hgrn_bit", key: value})
    assert message in str(info.value)


def numpy_forward(model, ids):
    """MODEL.md's equations in NumPy float64 with a sequential recurrence: logits and the
    residual stream after every block."""
    p = {key: value.detach().double().numpy() for key, value in model.state_dict().items()}
    config = model.config
    eps = config.rms_norm_eps

    def rms(x, weight):
        return x / np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True) + eps) * weight

    def bitlinear(x, name):
        return numpy_bitlinear(x, p[name + ".norm.weight"], p[name + ".weight"])[0]

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    bounds = np.exp(p["model.lower_bounds"])
    bounds /= bounds.sum(axis=0)
    bounds = np.cumsum(bounds, axis=0) - bounds[0]
    x = p["model.embeddings.weight"][ids.numpy()]
    hidden = [x]
    for n in range(config.num_hidden_layers):
        prefix = f"model.layers.{n}."
        xh = rms(x, p[prefix + "attn_norm.weight"])
        f = sigmoid(bitlinear(xh, prefix + "attn.f_proj"))
        if n > 0:
            f = bounds[n] + (1 - bounds[n]) * f
        i = bitlinear(xh, prefix + "attn.i_proj")
        c = i * sigmoid(i) * (1 - f)
        h = np.zeros_like(c)
        for t in range(c.shape[1]):
            h[:, t] = f[:, t] * (h[:, t - 1] if t else 0) + c[:, t]
        g = bitlinear(xh, prefix + "attn.g_proj")
        if config.output_gate == "swish":
            o = rms(g, p[prefix + "attn.g_norm.weight"]) * h * sigmoid(h)
        else:
            o = rms(sigmoid(g) * h, p[prefix + "attn.g_norm.weight"])
        r = x + bitlinear(o, prefix + "attn.o_proj")
        gate, y = np.split(bitlinear(rms(r, p[prefix + "mlp_norm.weight"]),
                                     prefix + "mlp.gate_proj"), 2, axis=-1)
        x = r + bitlinear(gate * sigmoid(gate) * y, prefix + "mlp.down_proj")
        hidden.append(x)
    return bitlinear(rms(x, p["model.norm.weight"]), "lm_head"), hidden


@pytest.mark.parametrize("output_gate", ["swish", "paper"])
def test_forward_matches_numpy(output_gate):
    model = random_model(seed=1, output_gate=output_gate, num_hidden_layers=3)
    ids = torch.randint(0, 64, (2, 24))
    output = model(ids, output_hidden_states=True)
    logits, hidden = numpy_forward(model, ids)
    np.testing.assert_allclose(output.logits.detach().numpy(), logits, rtol=0, atol=1e-9)
    assert len(output.hidden_states) == 4
    for ours, theirs in zip(output.hidden_states, hidden, strict=True):
        np.testing.assert_allclose(ours.detach().numpy(), theirs, rtol=0, atol=1e-9)


def test_output_gate_paper_differs():
    swish = random_model(seed=2)
    paper = HGRNBitForCausalLM(HGRNBitConfig(**SMALL, output_gate="paper")).double()
    paper.load_state_dict(swish.state_dict())
    ids = torch.randint(0, 64, (2, 16))
    assert (swish(ids).logits - paper(ids).logits).abs().max() > 1e-3


@pytest.mark.parametrize("output_gate", ["swish", "paper"])
def test_parallel_matches_recurrent(output_gate):
    model = random_model(seed=3, output_gate=output_gate)
    ids = torch.randint(0, 64, (3, 20))
    output = model(ids, output_hidden_states=True)
    state = model.initial_state(3)
    assert [tuple(s.shape) for s in state] == [(3, 32), (3, 32)]
    assert all(s.dtype == torch.float64 and not s.any() for s in state)
    for t in range(ids.shape[1]):
        logits, state, hidden = model.step_with_hidden_states(ids[:, t], state)
        torch.testing.assert_close(logits, output.logits[:, t], rtol=0, atol=1e-10)
        for ours, theirs in zip(hidden, output.hidden_states, strict=True):
            torch.testing.assert_close(ours, theirs[:, t], rtol=0, atol=1e-10)
    for ours, theirs in zip(state, output.state, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_forward_continues_from_state():
    model = random_model(seed=4)
    ids = torch.randint(0, 64, (2, 21))
    whole = model(ids).logits
    first = model(ids[:, :8])
    rest = model(ids[:, 8:], state=first.state).logits
    torch.testing.assert_close(torch.cat([first.logits, rest], dim=1), whole,
                               rtol=0, atol=1e-10)


def test_linear_recurrence_matches_loop():
    generator = torch.Generator().manual_seed(5)
    f = torch.rand(3, 37, 8, generator=generator, dtype=torch.float64)
    c = torch.randn(3, 37, 8, generator=generator, dtype=torch.float64)
    initial = torch.randn(3, 8, generator=generator, dtype=torch.float64)
    h, expected = initial, []
    for t in range(37):
        h = f[:, t] * h + c[:, t]
        expected.append(h)
    torch.testing.assert_close(linear_recurrence(f, c, initial), torch.stack(expected, 1),
                               rtol=1e-13, atol=1e-13)


def test_lower_bounds():
    model = random_model(seed=6, num_hidden_layers=4)
    raw = model.model.lower_bounds.detach().numpy()
    softmax = np.exp(raw) / np.exp(raw).sum(axis=0)
    bounds = model.model.layer_lower_bounds().detach().numpy()
    np.testing.assert_allclose(bounds, np.cumsum(softmax, axis=0) - softmax[0], atol=1e-15)
    assert not bounds[0].any() and (bounds[1:] > 0).all() and (bounds < 1).all()
    without = HGRNBitForCausalLM(HGRNBitConfig(**SMALL, use_lower_bound=False))
    assert "model.lower_bounds" not in without.state_dict()
    assert without.model.layer_lower_bounds() is None


def test_loss_is_shifted_cross_entropy():
    model = random_model(seed=7)
    ids = torch.randint(0, 64, (2, 12))
    labels = ids.clone()
    labels[0, 5] = -100
    output = model(ids, labels=labels)
    log_probabilities = output.logits.log_softmax(-1)
    picked = [-log_probabilities[b, t, labels[b, t + 1]] for b in range(2) for t in range(11)
              if labels[b, t + 1] != -100]
    torch.testing.assert_close(output.loss, torch.stack(picked).mean())
    assert model(ids).loss is None


def test_gradients_reach_every_parameter():
    model = random_model(seed=8, dtype=torch.float32)
    ids = torch.randint(0, 64, (4, 16))
    model(ids, labels=ids).loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name
        assert torch.isfinite(parameter.grad).all(), name


def test_initialisation():
    config = HGRNBitConfig(vocab_size=512, hidden_size=128, num_hidden_layers=3, pad_token_id=0)
    torch.manual_seed(9)
    model = HGRNBitForCausalLM(config)
    torch.manual_seed(9)
    again = HGRNBitForCausalLM(config)
    for (name, value), other in zip(model.state_dict().items(), again.state_dict().values(),
                                    strict=True):
        assert torch.equal(value, other), name
        if name.endswith("norm.weight"):
            assert value.eq(1).all(), name
    assert not model.model.lower_bounds.any()
    assert not model.model.embeddings.weight[0].any()
    assert model.model.embeddings.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.lm_head.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.model.layers[1].mlp.down_proj.weight.std().item() == pytest.approx(
        0.02 / math.sqrt(6), rel=0.05)
    assert model.model.layers[2].attn.o_proj.weight.std().item() == pytest.approx(
        0.02 / math.sqrt(6), rel=0.1)


def test_generate_greedy():
    model = random_model(seed=10)
    prompt = torch.randint(0, 64, (2, 5))
    tokens = model.generate(prompt, max_new_tokens=8)
    assert tokens.shape == (2, 13) and torch.equal(tokens[:, :5], prompt)
    # Each generated token is the arg-max of the parallel forward over the tokens before it.
    logits = model(tokens).logits
    assert torch.equal(logits[:, 4:-1].argmax(-1), tokens[:, 5:])
    sampled = model.generate(prompt, max_new_tokens=8, greedy=False,
                             generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (2, 13) and sampled.max() < 64
