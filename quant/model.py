"""The MatMul-free language model (``HGRNBitForCausalLM``) in plain PyTorch.

Same module names, state-dict keys and mathematics as the authors' ``mmfreelm`` package
(``/work/shared/MODEL.md``), without its Triton kernels: it runs on CPU, in float32, and in
float64 after ``.double()``. One code path serves the parallel forward over a sequence and the
recurrent decoding step (a step is the forward of one token from a given state).
"""

from __future__ import annotations

import dataclasses
import math
import os

import torch
from torch import nn
from torch.nn import functional as F

from tern_fpga.quant.bitlinear import BitLinear, RMSNorm
from tern_fpga.quant.config import HGRNBitConfig

__all__ = ["CausalLMOutput", "HGRNBitForCausalLM", "linear_recurrence"]


def linear_recurrence(f: torch.Tensor, c: torch.Tensor,
                      initial: torch.Tensor | None = None) -> torch.Tensor:
    """All states of ``h_t = f_t * h_{t-1} + c_t`` along dimension 1, ``h_{-1} = initial``.

    A log-depth (Hillis-Steele) scan: ``ceil(log2 T)`` element-wise passes over ``[B, T, d]``
    instead of ``T`` small ones. It only re-associates exact operations (products of gates and
    sums of products), so it agrees with the sequential loop to float rounding.

    Parameters
    ----------
    f, c : torch.Tensor
        Gates and inputs, ``[B, T, d]``.
    initial : torch.Tensor or None
        ``[B, d]``; zeros when ``None``.
    """
    if initial is not None:
        c = torch.cat([c[:, :1] + f[:, :1] * initial[:, None], c[:, 1:]], dim=1)
    gate, state = f, c
    shift = 1
    while shift < f.shape[1]:
        # Compose each position with the one ``shift`` earlier: (a, b) o (a', b') =
        # (a * a', b + a * b'); the first ``shift`` positions are already complete.
        state = torch.cat([state[:, :shift], state[:, shift:] + gate[:, shift:] *
                           state[:, :-shift]], dim=1)
        gate = torch.cat([gate[:, :shift], gate[:, shift:] * gate[:, :-shift]], dim=1)
        shift *= 2
    return state


class HGRNBitAttention(nn.Module):
    """MLGRU token mixer (one head, expand ratio 1): ``i/f/g/o_proj`` and ``g_norm``."""

    def __init__(self, config: HGRNBitConfig, layer_idx: int):
        super().__init__()
        d = config.hidden_size
        self.layer_idx = layer_idx
        self.output_gate = config.output_gate
        self.i_proj = BitLinear(d, d)
        self.f_proj = BitLinear(d, d)
        self.g_proj = BitLinear(d, d)
        self.g_norm = RMSNorm(d, config.rms_norm_eps)
        self.o_proj = BitLinear(d, d)

    def forward(self, x: torch.Tensor, lower_bound: torch.Tensor | None,
                state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix ``x [B, T, d]`` (already ``attn_norm``-ed); return output and the last state."""
        f = torch.sigmoid(self.f_proj(x))
        if lower_bound is not None and self.layer_idx > 0:
            f = lower_bound + (1 - lower_bound) * f
        c = F.silu(self.i_proj(x)) * (1 - f)
        # The reference keeps the recurrent state in fp32 whatever the activation dtype.
        state_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        initial = None if state is None else state.to(state_dtype)
        h = linear_recurrence(f.to(state_dtype), c.to(state_dtype), initial).to(x.dtype)
        g = self.g_proj(x)
        if self.output_gate == "swish":
            o = self.g_norm(g) * F.silu(h)
        else:
            o = self.g_norm(torch.sigmoid(g) * h)
        return self.o_proj(o), h[:, -1]


class HGRNBitMLP(nn.Module):
    """GLU channel mixer: ``gate_proj`` d -> 2I split in halves, ``down_proj`` I -> d."""

    def __init__(self, config: HGRNBitConfig):
        super().__init__()
        size = config.resolved_intermediate_size
        self.gate_proj = BitLinear(config.hidden_size, 2 * size)
        self.down_proj = BitLinear(size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, y = self.gate_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * y)


class HGRNBitBlock(nn.Module):
    """One block: ``r = x + attn(attn_norm(x)); x = r + mlp(mlp_norm(r))``."""

    def __init__(self, config: HGRNBitConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = HGRNBitAttention(config, layer_idx)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = HGRNBitMLP(config)

    def forward(self, x, lower_bound, state):
        mixed, new_state = self.attn(self.attn_norm(x), lower_bound, state)
        residual = x + mixed
        return residual + self.mlp(self.mlp_norm(residual)), new_state


class HGRNBitModel(nn.Module):
    """Embeddings, lower bounds, the blocks and the final norm (the ``model.`` prefix)."""

    def __init__(self, config: HGRNBitConfig):
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                       config.pad_token_id)
        if config.use_lower_bound:
            self.lower_bounds = nn.Parameter(torch.zeros(config.num_hidden_layers,
                                                         config.hidden_size))
        self.layers = nn.ModuleList(HGRNBitBlock(config, index)
                                    for index in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def layer_lower_bounds(self) -> torch.Tensor | None:
        """``[L, d]``: ``softmax(lower_bounds, 0)``, cumulated, minus its first row."""
        if not self.config.use_lower_bound:
            return None
        bounds = self.lower_bounds.softmax(dim=0)
        return bounds.cumsum(dim=0) - bounds[0]

    def forward(self, input_ids, state):
        x = self.embeddings(input_ids)
        bounds = self.layer_lower_bounds()
        hidden_states = [x]
        new_state = []
        for index, layer in enumerate(self.layers):
            x, layer_state = layer(x, None if bounds is None else bounds[index],
                                   None if state is None else state[index])
            hidden_states.append(x)
            new_state.append(layer_state)
        return self.norm(x), hidden_states, new_state


@dataclasses.dataclass
class CausalLMOutput:
    """What :meth:`HGRNBitForCausalLM.forward` returns.

    Members
    -------
    logits : torch.Tensor
        ``[B, T, V]``.
    loss : torch.Tensor or None
        Mean next-token cross entropy when labels were given (label -100 is ignored).
    state : list of torch.Tensor
        Recurrent state after the last token, one ``[B, d]`` per layer: pass it back as
        ``state`` (or to :meth:`~HGRNBitForCausalLM.step`) to continue the sequence.
    hidden_states : tuple of torch.Tensor or None
        With ``output_hidden_states=True``: ``L + 1`` tensors ``[B, T, d]``, the embeddings and
        the residual stream after every block (before the final norm). Note: Hugging Face's
        tuple instead ends with the *normed* output of the last block.
    """

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    state: list[torch.Tensor] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class HGRNBitForCausalLM(nn.Module):
    """The MatMul-free causal language model.

    Parameters
    ----------
    config : HGRNBitConfig
        Hyper-parameters; kept as :attr:`config`.

    Members
    -------
    model : HGRNBitModel
        Embeddings, blocks and final norm.
    lm_head : BitLinear
        ``d -> V``.
    """

    def __init__(self, config: HGRNBitConfig):
        super().__init__()
        if not isinstance(config, HGRNBitConfig):
            raise TypeError(f"config must be an HGRNBitConfig, not {type(config).__name__}")
        self.config = config
        self.model = HGRNBitModel(config)
        self.lm_head = BitLinear(config.hidden_size, config.vocab_size)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """Initialise like the reference ``_init_weights``: normal(0, initializer_range) for
        projections and embeddings (padding row zero), ones for norms, zeros for lower bounds,
        then ``o_proj`` and ``down_proj`` divided by ``sqrt(2 L)`` (GPT-2's residual scaling,
        which the reference applies too)."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (BitLinear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        if self.config.pad_token_id is not None:
            self.model.embeddings.weight[self.config.pad_token_id].zero_()
        if self.config.use_lower_bound:
            self.model.lower_bounds.zero_()
        residual_scale = math.sqrt(2 * self.config.num_hidden_layers)
        for layer in self.model.layers:
            layer.attn.o_proj.weight /= residual_scale
            layer.mlp.down_proj.weight /= residual_scale

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                state: list[torch.Tensor] | None = None,
                output_hidden_states: bool = False) -> CausalLMOutput:
        """Logits of every position of ``input_ids [B, T]`` (all positions at once).

        Parameters
        ----------
        labels : torch.Tensor or None
            ``[B, T]``; the loss at position ``t`` predicts ``labels[:, t + 1]`` (Hugging Face
            shift), ``-100`` is ignored.
        state : list of torch.Tensor or None
            Recurrent state to start from (see :meth:`initial_state`); zeros when ``None``.
        output_hidden_states : bool
            Also return the residual stream after every block.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, time], not shape "
                             f"{tuple(input_ids.shape)}")
        final, hidden_states, new_state = self.model(input_ids, state)
        logits = self.lm_head(final)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                   labels[:, 1:].reshape(-1).to(logits.device),
                                   ignore_index=-100)
        return CausalLMOutput(logits=logits, loss=loss, state=new_state,
                              hidden_states=tuple(hidden_states) if output_hidden_states
                              else None)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> list[torch.Tensor]:
        """Zero recurrent state: one ``[batch_size, d]`` tensor per layer.

        ``device`` and ``dtype`` default to the model's (fp32 for models below fp32).
        """
        weight = self.model.embeddings.weight
        if dtype is None:
            dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
        return [torch.zeros(batch_size, self.config.hidden_size, device=device or weight.device,
                            dtype=dtype) for _ in range(self.config.num_hidden_layers)]

    def step(self, token_ids: torch.Tensor,
             state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Recurrent decoding of one token per sequence: ``token_ids [B]`` -> ``logits [B, V]``
        and the new state (the given state is not modified)."""
        logits, new_state, _ = self.step_with_hidden_states(token_ids, state)
        return logits, new_state

    def step_with_hidden_states(self, token_ids, state):
        """Like :meth:`step`, also returning the ``L + 1`` hidden states ``[B, d]``."""
        output = self(token_ids[:, None], state=state, output_hidden_states=True)
        return (output.logits[:, 0], output.state,
                tuple(hidden[:, 0] for hidden in output.hidden_states))

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, greedy: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue ``input_ids [B, T]`` by ``max_new_tokens`` tokens; returns ``[B, T + n]``.

        Greedy (arg-max) by default, else sampled from the softmax (temperature 1).
        """
        output = self(input_ids)
        logits, state = output.logits[:, -1], output.state
        tokens = [input_ids]
        for index in range(max_new_tokens):
            if greedy:
                token = logits.argmax(dim=-1)
            else:
                probabilities = logits.float().softmax(dim=-1)
                token = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
            tokens.append(token[:, None])
            if index + 1 < max_new_tokens:
                logits, state = self.step(token, state)
        return torch.cat(tokens, dim=1)

    def save_pretrained(self, path: str | os.PathLike):
        """Write ``config.json`` and ``model.safetensors`` to the folder ``path``."""
        # here, not at the top: tern_fpga.quant.checkpoint imports this module
        from tern_fpga.quant.checkpoint import save_pretrained
        save_pretrained(self, path)
