"""Hugging Face tokenizers built offline (no downloads), of an exact vocabulary size, in the
shapes released checkpoints ship as ``tokenizer.json``."""

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, WordLevel

SPECIALS = ("<unk>", "<s>", "</s>")
# Words every test tokenizer knows (ids from 3 on, in this order).
WORDS = ("hello", "world", "the", "tern", "board", "token", "once", "upon", "a", "time")


def _filler(count: int) -> list[str]:
    """``count`` distinct lowercase words to pad a vocabulary with (``baba``, ``babe``, ...)."""
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    words = (c1 + v1 + c2 + v2 for c1 in consonants for v1 in vowels
             for c2 in consonants for v2 in vowels)
    return [word for word, _ in zip(words, range(count))]


def word_level(vocab_size: int) -> Tokenizer:
    """Whole words split at white space, joined by spaces when decoded: a token is never part
    of a character, so any id sequence streams to exactly its decoded text."""
    words = list(SPECIALS) + list(WORDS)
    words += _filler(vocab_size - len(words))
    tokenizer = Tokenizer(WordLevel({word: index for index, word in enumerate(words)},
                                    unk_token="<unk>"))
    tokenizer.add_special_tokens(list(SPECIALS))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece()
    assert tokenizer.get_vocab_size() == vocab_size
    return tokenizer


def llama_like(vocab_size: int) -> Tokenizer:
    """The shape of the Llama tokenizer the released MatMul-free models use: SentencePiece-style
    BPE with ``▁`` for spaces, a BOS added to every text, and byte fallback (``<0xE6>`` ...), so
    that a character outside the vocabulary is several tokens (日 is three)."""
    vocab = {token: index for index, token in enumerate(SPECIALS)}
    vocab.update({f"<0x{byte:02X}>": len(vocab) + byte for byte in range(256)})
    for letter in "▁abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
    merges = []
    for word in ("▁" + word for word in WORDS + tuple(_filler(vocab_size))):
        if len(vocab) >= vocab_size:
            break
        joined = word[0]
        for letter in word[1:]:
            if joined + letter not in vocab and len(vocab) < vocab_size:
                merges.append((joined, letter))
                vocab[joined + letter] = len(vocab)
            joined += letter
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                              fuse_unk=True))
    tokenizer.add_special_tokens(list(SPECIALS))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                                 normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                           decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                             special_tokens=[("<s>", 1)])
    assert tokenizer.get_vocab_size() == vocab_size
    return tokenizer
