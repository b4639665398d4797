"""Text to token ids and back for the byte-level models tern trains (vocabulary 256)."""

from __future__ import annotations

from tern.errors import TernError

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
        import codecs

        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token: int) -> str:
        return self._decoder.decode(bytes([token]))
