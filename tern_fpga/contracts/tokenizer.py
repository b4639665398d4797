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


def add_prompt_arguments(parser, default_tokens: int = 64, required: bool = True):
    """``--prompt TEXT`` or ``--ids 1,2,3`` (one of them, which ``required`` asks for), and
    ``-n``."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--prompt", help="prompt text (byte-level models)")
    group.add_argument("--ids", help="prompt token ids, comma separated")
    parser.add_argument("-n", "--tokens", type=int, default=default_tokens,
                        help=f"tokens to generate (default {default_tokens})")


def encode_argument(text: str) -> list[int]:
    """A ``--prompt`` as bytes; a command line or file that is not UTF-8 (Python holds its bytes
    as surrogate escapes) is refused with the ``--ids`` that would pass its bytes as they are."""
    try:
        return encode(text)
    except UnicodeEncodeError as error:
        raw = text.encode("utf-8", errors="surrogateescape")
        offset = len(text[:error.start].encode("utf-8"))
        ids = ",".join(map(str, raw[:16])) + (f",... ({len(raw)} ids)" if len(raw) > 16 else "")
        raise TernError(f"--prompt is not valid UTF-8 text (byte 0x{raw[offset]:02x} at offset "
                        f"{offset}); pass text, or its bytes as token ids: --ids {ids}") from None


def check_ids(ids: list[int], model_config: dict, what: str = "--ids") -> list[int]:
    """``ids``, if every one is a token of the model's vocabulary (``vocab_size``)."""
    vocab = model_config.get("vocab_size")
    if type(vocab) is not int or vocab < 1:
        raise TernError(f"the export's model has no vocabulary size (vocab_size {vocab!r}); "
                        f"re-export it with `tern export`")
    if not ids:
        raise TernError(f"{what}: the prompt needs at least one token")
    outside = [token for token in ids if not 0 <= token < vocab]
    if outside:
        raise TernError(f"{what}: token {outside[0]} is outside the model's vocabulary of "
                        f"{vocab} (ids 0 to {vocab - 1})"
                        + (f", and {len(outside) - 1} more" if len(outside) > 1 else ""))
    return ids


def prompt_from_arguments(args, model_config: dict) -> list[int]:
    """The prompt's token ids from :func:`add_prompt_arguments`' options, checked against the
    model's vocabulary (before anything is loaded or run).

    Raises
    ------
    TernError
        For ``-n`` below 1, a ``--prompt`` for a model that is not byte-level or that is not
        UTF-8 text, ``--ids`` that are not integers or not tokens of the model.
    """
    if args.tokens < 1:
        raise TernError(f"-n must be at least 1, not {args.tokens}")
    if args.prompt is not None:
        check_byte_level(model_config)
        return check_ids(encode_argument(args.prompt), model_config, "--prompt")
    try:
        ids = [int(value) for value in args.ids.split(",")]
    except ValueError:
        raise TernError(f"--ids takes comma-separated integers, not {args.ids!r}") from None
    return check_ids(ids, model_config)
