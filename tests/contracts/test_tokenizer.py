"""Text and token ids: byte-level by default, a checkpoint's own ``tokenizer.json`` when an
export carries one; streaming decode prints a character split over several tokens once whole."""

import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tern_fpga.contracts import tokenizer
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.tokenizer import (
    TOKENIZER_SECTION,
    ByteTokenizer,
    JsonTokenizer,
    for_export,
)

from support.text_tokenizers import llama_like, word_level

VOCAB = 320


@pytest.fixture(scope="module")
def llama():
    return JsonTokenizer(llama_like(VOCAB).to_str().encode(), "test tokenizer.json")


def export_with(vocab_size, data=None):
    """What :func:`for_export` reads of an export: its model config and sections."""
    sections = {} if data is None else \
        {TOKENIZER_SECTION: np.frombuffer(data, dtype=np.uint8)}
    return types.SimpleNamespace(model_config={"vocab_size": vocab_size}, sections=sections)


def streamed(text_tokenizer, prompt, generated):
    """Each token's printed text, and what :meth:`finish` adds at the end."""
    stream = text_tokenizer.stream(prompt)
    return [stream.feed(token) for token in generated], stream.finish()


def test_an_export_without_a_tokenizer_is_byte_level_or_token_ids():
    assert isinstance(for_export(export_with(256), "m.tern"), ByteTokenizer)
    assert for_export(export_with(VOCAB), "m.tern") is None
    assert tokenizer.no_tokenizer_note({"vocab_size": VOCAB}, "m.tern") == (
        "note: m.tern carries no tokenizer and its vocabulary is 320 tokens, not bytes: printing "
        "token ids (export from a checkpoint folder with its tokenizer.json for text)")


def test_byte_level_streams_a_character_of_several_bytes_once_whole():
    pieces, end = streamed(ByteTokenizer(), [104], list("日é!".encode()))
    assert pieces == ["", "", "日", "", "é", "!"] and end == ""
    pieces, end = streamed(ByteTokenizer(), [104], [0xE6, 0x97])   # cut short at the end
    assert pieces == ["", ""] and end == "\ufffd"


def test_the_checkpoint_tokenizer_round_trips_text(llama):
    text = "hello world, once upon a time 日本 é"
    ids = llama.encode(text)
    assert ids[0] == 1                              # the BOS the file's post-processor adds
    assert len(ids) > len(text.split()) + 6         # 日, 本 and é are byte tokens
    assert llama.decode(ids) == text
    assert llama.vocab_size == VOCAB and llama.name == "tokenizer.json (320 tokens)"


def test_streaming_prints_whole_characters_and_keeps_spaces(llama):
    prompt = llama.encode("hello")
    generated = llama.encode("hello world 日本")[2:]       # after <s> ▁hello
    pieces, end = streamed(llama, prompt, generated)
    # ▁world after the prompt keeps its space; 日 and 本 are three byte tokens each.
    assert pieces == [" world", " ", "", "", "日", "", "", "本"] and end == ""
    assert llama.decode(prompt) + "".join(pieces) == "hello world 日本"


def test_a_character_never_completed_is_printed_as_a_replacement(llama):
    broken = [llama.encode(" 日")[-3]] * 10             # lead bytes 0xE6, no continuation
    pieces, end = streamed(llama, llama.encode("hello"), broken)
    assert "".join(pieces) + end == "\ufffd" * 10
    # held back for 8 tokens (a space and two characters' bytes), then printed
    assert pieces[:7] == [""] * 7 and pieces[7] == "\ufffd" * 8 and end == "\ufffd" * 2


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="helo wrdtimn日本é€😀,", min_size=2), st.data())
def test_streamed_text_is_the_decoded_text(llama, text, data):
    ids = llama.encode(text)
    # A prompt is whole text: it ends after a whole character.
    whole = [split for split in range(1, len(ids)) if not llama.decode(ids[:split]).endswith("\ufffd")]
    split = data.draw(st.sampled_from(whole))
    pieces, end = streamed(llama, ids[:split], ids[split:])
    assert llama.decode(ids[:split]) + "".join(pieces) + end == llama.decode(ids)


def test_word_level_streams_every_id_sequence_to_its_text():
    words = JsonTokenizer(word_level(VOCAB).to_str().encode(), "words")
    rng = np.random.default_rng(0)
    generated = [int(token) for token in rng.integers(0, VOCAB, 50)]
    pieces, end = streamed(words, words.encode("hello world"), generated)
    assert "hello world" + "".join(pieces) + end == words.decode(words.encode("hello world")
                                                                 + generated)


def test_an_export_carries_its_tokenizer(llama):
    carried = for_export(export_with(VOCAB, llama.data), "m.tern")
    assert carried.data == llama.data and carried.encode("hello") == llama.encode("hello")


def test_a_tokenizer_of_another_vocabulary_is_one_line(llama):
    with pytest.raises(TernError) as info:
        for_export(export_with(256, llama.data), "m.tern")
    assert str(info.value) == (
        "m.tern's 'tokenizer' section has 320 tokens but the model's vocab_size is 256: it is "
        "another model's tokenizer; use the checkpoint's own tokenizer.json, or remove it to "
        "get token ids")


@pytest.mark.parametrize("data, reason", [
    (b'{"version": "1.0"}', "Model missing. at line 1 column 18"),
    (b"\xff\xfe", "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
])
def test_a_section_that_is_not_a_tokenizer_is_one_line(data, reason):
    with pytest.raises(TernError) as info:
        for_export(export_with(VOCAB, data), "m.tern")
    message = str(info.value)
    assert message.startswith("m.tern's 'tokenizer' section is not a tokenizer.json the "
                              "tokenizers library reads (") and reason in message
    assert message.endswith("); use the checkpoint's own file, or remove it to get token ids")
    assert "\n" not in message


def test_a_section_of_another_dtype_is_refused():
    export = export_with(VOCAB)
    export.sections[TOKENIZER_SECTION] = np.zeros((2, 3), np.int32)
    with pytest.raises(TernError, match=r"^m.tern's 'tokenizer' section is int32 of shape "
                                        r"\[2, 3\], not the 1-D uint8 bytes of a tokenizer.json"):
        for_export(export, "m.tern")


def test_a_prompt_is_encoded_with_the_export_tokenizer(llama):
    args = types.SimpleNamespace(tokens=4, prompt="hello world", ids=None)
    assert tokenizer.prompt_from_arguments(args, {"vocab_size": VOCAB}, llama) == \
        llama.encode("hello world")
    with pytest.raises(TernError) as info:
        tokenizer.prompt_from_arguments(args, {"vocab_size": VOCAB})
    assert str(info.value) == (
        "--prompt needs a tokenizer: this export's model has vocab_size 320 (not byte-level) "
        "and carries no tokenizer.json; export it from a checkpoint folder with its "
        "tokenizer.json, or pass token ids with --ids")
