"""Text to token ids and back for the byte-level models tern trains (vocabulary 256)."""

from __future__ import annotations

import codecs

from tern_fpga.contracts.errors import TernError

BYTE_VOCABULARY = 256


def check_byte_level(model_config: dict):
    vocab = model_config.get("vocab_size")
    if vocab != BYTE_VOCABULARY:
        raise TernError(
            f"--prompt needs a byte-level model (vocab_size 256), this one has vocab_size "
            f"{vocab}; pass token ids with --ids instead")


def encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def decode(ids: list[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")


class IncrementalDecoder:
    """Bytes to text one token at a time, holding back an incomplete UTF-8 sequence."""

    def __init__(self):

        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token: int) -> str:
        return self._decoder.decode(bytes([token]))


def add_prompt_arguments(parser, default_tokens: int = 64):
    """``--prompt TEXT`` or ``--ids 1,2,3`` (one is required), and ``-n``."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--prompt", help="prompt text (byte-level models)")
    group.add_argument("--ids", help="prompt token ids, comma separated")
    parser.add_argument("-n", "--tokens", type=int, default=default_tokens,
                        help="tokens to generate")


def prompt_from_arguments(args, model_config: dict) -> list[int]:
    """The prompt's token ids from :func:`add_prompt_arguments`' options, checked."""
    if args.tokens < 1:
        raise TernError(f"-n must be at least 1, not {args.tokens}")
    if args.prompt is not None:
        check_byte_level(model_config)
        return encode(args.prompt)
    try:
        return [int(value) for value in args.ids.split(",")]
    except ValueError:
        raise TernError(f"--ids takes comma-separated integers, not {args.ids!r}") from None
