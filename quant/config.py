"""The model configuration: :class:`HGRNBitConfig`, read and written as a Hugging Face
``config.json`` with ``"model_type": "hgrn_bit"``.

Field names and defaults are those of the authors' ``mmfreelm`` package (see
``/work/shared/MODEL.md``). Values that would change the mathematics into something this
implementation does not compute (a short convolution, several heads, ...) are refused with a
:class:`ConfigError` that names the key, the value and what is supported, rather than being
silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings

from tern_fpga.contracts.errors import TernError

__all__ = ["ConfigError", "HGRNBitConfig"]

MODEL_TYPE = "hgrn_bit"
ARCHITECTURE = "HGRNBitForCausalLM"

# Keys a Hugging Face ``config.json`` may carry that do not change the model's mathematics:
# bookkeeping of ``PretrainedConfig`` and generation defaults. They are accepted and dropped.
HF_IGNORED_KEYS = frozenset({
    "architectures", "torch_dtype", "transformers_version", "_name_or_path", "_commit_hash",
    "_attn_implementation", "auto_map", "keys_to_ignore_at_inference", "fuse_cross_entropy",
    "return_dict", "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16",
    "tf_legacy_loss", "pruned_heads", "chunk_size_feed_forward", "is_encoder_decoder",
    "is_decoder", "cross_attention_hidden_size", "add_cross_attention", "tie_encoder_decoder",
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
    "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
    "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
    "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
    "suppress_tokens", "begin_suppress_tokens", "finetuning_task", "id2label", "label2id",
    "num_labels", "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
    "task_specific_params", "problem_type",
})

# attn_mode only selects which GPU kernel evaluates the same recurrence.
SUPPORTED_ATTN_MODES = ("fused_recurrent", "chunk", "fused_chunk")
SUPPORTED_ACTIVATIONS = ("swish", "silu")
OUTPUT_GATES = ("swish", "paper")
# Far above any released model, far below what would overflow a tensor's element count: a
# config beyond them is damaged, and is refused before anything is built from it.
MAX_SIZE = 1 << 20
MAX_LAYERS = 1024
MAX_HIDDEN_RATIO = 64


class ConfigError(TernError):
    """A configuration value that this implementation cannot compute, or a malformed file."""


@dataclasses.dataclass
class HGRNBitConfig:
    """Hyper-parameters of the MatMul-free language model (``HGRNBitForCausalLM``).

    Parameters
    ----------
    vocab_size, hidden_size, num_hidden_layers : int
        ``V``, ``d`` and ``L``.
    attn_mode : str
        Kernel choice of the reference code; all supported modes compute the same recurrence.
    num_heads, expand_ratio : int
        Must be 1 (the released models; the token mixer is then d x d everywhere).
    use_short_conv : bool
        Must be false. ``conv_size`` and ``share_conv_kernel`` are kept for round trips only.
    use_lower_bound : bool
        Learnable forget-gate lower bounds (``model.lower_bounds``).
    hidden_ratio : int
        GLU width factor when ``intermediate_size`` is not given.
    intermediate_size : int or None
        ``I``; ``None`` derives it (see :attr:`resolved_intermediate_size`).
    hidden_act : str
        ``"swish"`` or ``"silu"`` (the same function).
    max_position_embeddings : int
        Recorded only: the model has no position embeddings.
    rms_norm_eps : float
        Eps of the block norms, ``g_norm`` and the final norm. BitLinear's own norm always uses
        1e-6 (the fused kernel's default, see MODEL.md).
    use_cache, pad_token_id, bos_token_id, eos_token_id : int or None
        Hugging Face bookkeeping; ``pad_token_id`` also zeroes that embedding row at init.
    tie_word_embeddings : bool
        Must be false (the LM head is a BitLinear of its own).
    initializer_range : float
        Standard deviation of the normal initialisation.
    output_gate : str
        ``"swish"`` (default, the released code: ``o' = g_norm(g) * silu(h)``) or ``"paper"``
        (``o' = g_norm(sigmoid(g) * h)``). Written to ``config.json`` only when not default.

    Raises
    ------
    ConfigError
        On any value listed above as "must", a size that is not a positive integer or is beyond
        :data:`MAX_SIZE` (:data:`MAX_LAYERS` layers, :data:`MAX_HIDDEN_RATIO`), a norm eps or
        initializer range that is not a positive finite number, or a flag that is not a bool.
    """

    vocab_size: int = 32000
    hidden_size: int = 2048
    num_hidden_layers: int = 24
    attn_mode: str = "fused_recurrent"
    num_heads: int = 1
    expand_ratio: int = 1
    use_short_conv: bool = False
    conv_size: int = 4
    share_conv_kernel: bool = True
    use_lower_bound: bool = True
    hidden_ratio: int = 4
    intermediate_size: int | None = None
    hidden_act: str = "swish"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    output_gate: str = "swish"

    model_type = MODEL_TYPE

    def __post_init__(self):
        for key, most in (("vocab_size", MAX_SIZE), ("hidden_size", MAX_SIZE),
                          ("num_hidden_layers", MAX_LAYERS), ("hidden_ratio", MAX_HIDDEN_RATIO)):
            self._check_positive_int(key, most)
        if self.intermediate_size is not None:
            self._check_positive_int("intermediate_size", MAX_SIZE)
        self._check_supported("attn_mode", SUPPORTED_ATTN_MODES)
        self._check_supported("num_heads", (1,))
        self._check_supported("expand_ratio", (1,))
        self._check_supported("use_short_conv", (False,))
        self._check_supported("tie_word_embeddings", (False,))
        self._check_supported("hidden_act", SUPPORTED_ACTIVATIONS)
        self._check_supported("output_gate", OUTPUT_GATES)
        for key in ("rms_norm_eps", "initializer_range"):
            value = getattr(self, key)
            if type(value) not in (int, float) or not 0 < value < math.inf:
                raise ConfigError(f"{key} must be a positive finite number, not {value!r}")
        for key in ("use_lower_bound", "use_cache", "share_conv_kernel"):
            if type(getattr(self, key)) is not bool:
                raise ConfigError(f"{key} must be true or false, not "
                                  f"{json.dumps(getattr(self, key))}")
        if self.pad_token_id is not None and not (type(self.pad_token_id) is int
                                                  and 0 <= self.pad_token_id < self.vocab_size):
            raise ConfigError(f"pad_token_id must be null or a token id below vocab_size "
                              f"{self.vocab_size}, not {self.pad_token_id!r}")

    def _check_positive_int(self, key, most: int):
        value = getattr(self, key)
        if type(value) is not int or value <= 0:
            raise ConfigError(f"{key} must be a positive integer, not {value!r}")
        if value > most:
            raise ConfigError(f"{key} is {value:,}, more than any model this implementation "
                              f"runs (at most {most:,}): the config is damaged")

    def _check_supported(self, key, supported):
        value = getattr(self, key)
        # ``True == 1`` in Python: compare types too, so ``num_heads: true`` is refused.
        if not any(type(value) is type(s) and value == s for s in supported):
            choices = ", ".join(json.dumps(s) for s in supported)
            raise ConfigError(f"unsupported config value {key}={json.dumps(value)}: this "
                              f"implementation supports {key} in {{{choices}}} only")

    @property
    def resolved_intermediate_size(self) -> int:
        """``I``: ``intermediate_size`` if given, else
        ``256 * ceil(int(d * hidden_ratio * 2 / 3) / 256)`` as in the reference code."""
        if self.intermediate_size is not None:
            return self.intermediate_size
        size = int(self.hidden_size * self.hidden_ratio * 2 / 3)
        return 256 * math.ceil(size / 256)

    def to_dict(self) -> dict:
        """Every field plus ``model_type``; ``output_gate`` only when not the default."""
        result = dataclasses.asdict(self)
        if result["output_gate"] == "swish":
            del result["output_gate"]
        result["model_type"] = MODEL_TYPE
        return result

    @classmethod
    def from_dict(cls, values: dict) -> HGRNBitConfig:
        """Build from a ``config.json`` dictionary.

        ``model_type`` must be ``hgrn_bit``; Hugging Face bookkeeping keys are ignored; other
        unknown keys are ignored with a warning. Bad values raise :class:`ConfigError`.
        """
        if not isinstance(values, dict):
            raise ConfigError(f"a config must be a JSON object, not {type(values).__name__}")
        model_type = values.get("model_type")
        if model_type != MODEL_TYPE:
            raise ConfigError(f"model_type is {model_type!r}; only {MODEL_TYPE!r} "
                              f"(MatMul-free LM, HGRNBitForCausalLM) is supported")
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields - HF_IGNORED_KEYS - {"model_type"})
        if unknown:
            warnings.warn(f"ignoring unknown config keys {unknown}", stacklevel=2)
        return cls(**{key: value for key, value in values.items() if key in fields})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> HGRNBitConfig:
        """Read a ``config.json``; a missing or malformed file raises :class:`ConfigError`."""
        try:
            with open(path, encoding="utf-8") as file:
                values = json.load(file)
        except FileNotFoundError:
            raise ConfigError(f"config file {os.fspath(path)!r} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"config file {os.fspath(path)!r} is not valid JSON: "
                              f"{error}") from None
        return cls.from_dict(values)

    def to_json_file(self, path: str | os.PathLike, torch_dtype: str | None = None):
        """Write a Hugging Face style ``config.json`` (sorted keys, ``architectures`` set)."""
        values = {"architectures": [ARCHITECTURE], **self.to_dict()}
        if torch_dtype is not None:
            values["torch_dtype"] = torch_dtype
        with open(path, "w", encoding="utf-8") as file:
            json.dump(values, file, indent=2, sort_keys=True)
            file.write("\n")
