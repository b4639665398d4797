"""Text to token ids and back: byte-level for the models tern trains (vocabulary 256), or a
checkpoint's own Hugging Face ``tokenizer.json`` (the released models' 32,000-token vocabulary).

``tern export`` copies a checkpoint folder's ``tokenizer.json`` into the export's optional
``tokenizer`` section (docs/export-format.md), so ``tern golden`` and ``tern generate`` need only
the ``.tern`` file: :func:`for_export` gives its tokenizer, byte-level for a vocabulary of 256
without one, and None (print token ids) for any other vocabulary without one.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np

from tern_fpga.contracts.errors import TernError

BYTE_VOCABULARY = 256
# The export section that carries a tokenizer.json's bytes, and the file in a checkpoint folder.
TOKENIZER_SECTION = "tokenizer"
TOKENIZER_FILE = "tokenizer.json"
# A character of a byte-fallback vocabulary spans at most 4 tokens (UTF-8 bytes), and a space
# token may come before it: a stream holds back an incomplete one for twice that at most, then
# prints what it has (replacement characters for bytes that never make a character); so too
# for tokens that print nothing (special tokens).
_MOST_HELD_TOKENS = 8


class ByteTokenizer:
    """UTF-8 bytes as tokens: the default for tern's own models (vocabulary 256)."""

    name = "byte-level"
    vocab_size = BYTE_VOCABULARY

    def encode(self, text: str) -> list[int]:
        return encode(text)

    def decode(self, ids) -> str:
        return decode(ids)

    def stream(self, context=()) -> IncrementalDecoder:
        """A decoder for generated tokens (``context``, the prompt, needs no decoding)."""
        return IncrementalDecoder()


class JsonTokenizer:
    """A Hugging Face ``tokenizer.json``, read with the ``tokenizers`` library (no download).

    Parameters
    ----------
    data : bytes
        The file's bytes.
    where : str
        Where they come from, for messages (a path, or an export's section).

    Raises
    ------
    TernError
        If the bytes are not a tokenizer the library reads.
    """

    def __init__(self, data: bytes, where: str):
        import tokenizers  # here, not at the top: a Rust extension byte-level models never need

        self.data, self.where = bytes(data), where
        try:
            self._tokenizer = tokenizers.Tokenizer.from_str(self.data.decode("utf-8"))
        except Exception as error:  # noqa: BLE001 -- the library raises a bare Exception
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise TernError(f"{where} is not a tokenizer.json the tokenizers library reads "
                            f"({reason}); use the checkpoint's own file, or remove it to get "
                            f"token ids") from None
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        self.name = f"{TOKENIZER_FILE} ({self.vocab_size:,} tokens)"

    def encode(self, text: str) -> list[int]:
        """``text``'s ids, with the special tokens the file's post-processor adds (a BOS)."""
        return self._tokenizer.encode(text).ids

    def decode(self, ids) -> str:
        return self._tokenizer.decode([int(token) for token in ids], skip_special_tokens=True)

    def stream(self, context=()) -> SuffixDecoder:
        """A decoder for tokens generated after ``context`` (the prompt's ids)."""
        return SuffixDecoder(self.decode, context)


class IncrementalDecoder:
    """Bytes to text one token at a time, holding back an incomplete UTF-8 sequence."""

    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token: int) -> str:
        return self._decoder.decode(bytes([token]))

    def finish(self) -> str:
        """What is held back at the end (an incomplete sequence, as a replacement character)."""
        return self._decoder.decode(b"", final=True)


class SuffixDecoder:
    """Tokens to text one at a time for a tokenizer whose tokens need not be whole characters:
    decode the ids since the last text printed, with and without the new ones, and print the
    difference, holding it back while it ends in an incomplete character (a replacement
    character). The ids decoded always start where a printed text ended, at a whole character,
    and with at least one token before the new ones, so that a tokenizer that treats the first
    token of a text apart (SentencePiece drops its leading space) does so to both texts."""

    def __init__(self, decode_ids, context=()):
        self._decode = decode_ids
        self._ids = [int(token) for token in context]
        self._printed = len(self._ids)   # ids whose text is out
        self._start = 0                  # where the text decoded for the next one starts

    def feed(self, token: int) -> str:
        self._ids.append(int(token))
        return self._new_text(final=False)

    def finish(self) -> str:
        """What is held back at the end (an incomplete character, as a replacement character)."""
        return self._new_text(final=True)

    def _new_text(self, final: bool) -> str:
        before = self._decode(self._ids[self._start:self._printed])
        after = self._decode(self._ids[self._start:])
        # Nothing new yet (a special token, a space SentencePiece drops at the start), or an
        # incomplete character: wait for the next token, for a few tokens at most.
        waiting = len(after) <= len(before) or after.endswith("\ufffd")
        if waiting and not final and len(self._ids) - self._printed < _MOST_HELD_TOKENS:
            return ""
        self._start, self._printed = self._printed, len(self._ids)
        return after[len(before):]


def check_vocabulary(text_tokenizer, model_config: dict, where: str) -> None:
    """Raise one line unless the tokenizer's vocabulary is the model's (``vocab_size``)."""
    vocab = model_config.get("vocab_size")
    if text_tokenizer.vocab_size != vocab:
        raise TernError(f"{where} has {text_tokenizer.vocab_size:,} tokens but the model's "
                        f"vocab_size is {vocab!r}: it is another model's tokenizer; use the "
                        f"checkpoint's own {TOKENIZER_FILE}, or remove it to get token ids")


def read_checkpoint_tokenizer(folder, model_config: dict) -> JsonTokenizer | None:
    """The ``tokenizer.json`` of a checkpoint folder, checked against the model; None without
    one.

    Raises
    ------
    TernError
        If the file is unreadable, not a tokenizer or of another vocabulary size.
    """
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TernError(f"cannot read {path}: {error.strerror}") from None
    text_tokenizer = JsonTokenizer(data, str(path))
    check_vocabulary(text_tokenizer, model_config, str(path))
    return text_tokenizer


def missing_tokenizer_note(folder, model_config: dict) -> str | None:
    """What to tell the user when a checkpoint folder with a vocabulary other than bytes has no
    ``tokenizer.json`` (its exports print token ids); None when no note is needed."""
    folder = Path(folder)
    if (folder / TOKENIZER_FILE).is_file() or model_config.get("vocab_size") == BYTE_VOCABULARY:
        return None
    hint = (f"; it has tokenizer.model only: write the {TOKENIZER_FILE} with transformers "
            f"(AutoTokenizer.from_pretrained(folder).save_pretrained(folder)) and export again"
            if (folder / "tokenizer.model").is_file() else
            f"; put the checkpoint's own {TOKENIZER_FILE} there and export again for text")
    return (f"note: {folder} has no {TOKENIZER_FILE} and its vocabulary is "
            f"{model_config.get('vocab_size')!r} tokens, not bytes: `tern golden` and "
            f"`tern generate` will print token ids{hint}")


def tokenizer_section(text_tokenizer: JsonTokenizer) -> np.ndarray:
    """The export section that carries ``text_tokenizer``: its file's bytes as uint8."""
    return np.frombuffer(text_tokenizer.data, dtype=np.uint8).copy()


def for_export(export, where) -> ByteTokenizer | JsonTokenizer | None:
    """The tokenizer of a ``.tern`` export (``where`` names it in messages): the one its
    ``tokenizer`` section carries, else byte-level for a vocabulary of 256, else None (token ids).

    Raises
    ------
    TernError
        If the section is not a readable tokenizer or its vocabulary is not the model's.
    """
    section = export.sections.get(TOKENIZER_SECTION)
    if section is None:
        return ByteTokenizer() if export.model_config.get("vocab_size") == BYTE_VOCABULARY \
            else None
    what = f"{where}'s {TOKENIZER_SECTION!r} section"
    if section.dtype != np.uint8 or section.ndim != 1:
        raise TernError(f"{what} is {section.dtype} of shape {list(section.shape)}, not the 1-D "
                        f"uint8 bytes of a {TOKENIZER_FILE}; re-export it with `tern export`")
    text_tokenizer = JsonTokenizer(section.tobytes(), what)
    check_vocabulary(text_tokenizer, export.model_config, what)
    return text_tokenizer


def no_tokenizer_note(model_config: dict, where) -> str:
    """The note for an export that prints token ids because it carries no tokenizer."""
    return (f"note: {where} carries no tokenizer and its vocabulary is "
            f"{model_config.get('vocab_size')!r} tokens, not bytes: printing token ids (export "
            f"from a checkpoint folder with its {TOKENIZER_FILE} for text)")


def check_byte_level(model_config: dict):
    vocab = model_config.get("vocab_size")
    if vocab != BYTE_VOCABULARY:
        raise TernError(
            f"--prompt needs a tokenizer: this export's model has vocab_size {vocab} (not "
            f"byte-level) and carries no {TOKENIZER_FILE}; export it from a checkpoint folder "
            f"with its {TOKENIZER_FILE}, or pass token ids with --ids")


def encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def decode(ids: list[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")


def add_prompt_arguments(parser, default_tokens: int = 64, required: bool = True):
    """``--prompt TEXT`` or ``--ids 1,2,3`` (one of them, which ``required`` asks for), and
    ``-n``."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--prompt", help="prompt text (byte-level models, or an export that "
                                        "carries its checkpoint's tokenizer.json)")
    group.add_argument("--ids", help="prompt token ids, comma separated")
    parser.add_argument("-n", "--tokens", type=int, default=default_tokens,
                        help=f"tokens to generate (default {default_tokens})")


def encode_argument(text: str, text_tokenizer=None) -> list[int]:
    """A ``--prompt``'s ids (as bytes without a tokenizer); a command line or file that is not
    UTF-8 (Python holds its bytes as surrogate escapes) is refused with the ``--ids`` that would
    pass its bytes as they are (to a byte-level model)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raw = text.encode("utf-8", errors="surrogateescape")
        offset = len(text[:error.start].encode("utf-8"))
        ids = ",".join(map(str, raw[:16])) + (f",... ({len(raw)} ids)" if len(raw) > 16 else "")
        raise TernError(f"--prompt is not valid UTF-8 text (byte 0x{raw[offset]:02x} at offset "
                        f"{offset}); pass text, or its bytes as token ids: --ids {ids}") from None
    return (text_tokenizer or ByteTokenizer()).encode(text)


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


def prompt_from_arguments(args, model_config: dict, text_tokenizer=None) -> list[int]:
    """The prompt's token ids from :func:`add_prompt_arguments`' options, checked against the
    model's vocabulary (before anything is loaded or run). ``--prompt`` is encoded with
    ``text_tokenizer`` (the export's, :func:`for_export`), byte-level without one.

    Raises
    ------
    TernError
        For ``-n`` below 1, a ``--prompt`` for a model without a tokenizer that is not
        byte-level or that is not UTF-8 text, ``--ids`` that are not integers or not tokens of
        the model.
    """
    if args.tokens < 1:
        raise TernError(f"-n must be at least 1, not {args.tokens}")
    if args.prompt is not None:
        if text_tokenizer is None:
            check_byte_level(model_config)
        return check_ids(encode_argument(args.prompt, text_tokenizer), model_config, "--prompt")
    try:
        ids = [int(value) for value in args.ids.split(",")]
    except ValueError:
        raise TernError(f"--ids takes comma-separated integers, not {args.ids!r}") from None
    return check_ids(ids, model_config)
