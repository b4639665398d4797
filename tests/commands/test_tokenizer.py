"""Checkpoints as released, with their own ``tokenizer.json``: ``tern export`` carries it in the
``.tern`` file, ``tern golden`` and ``tern generate`` print text with it; without one, a model
that is not byte-level prints token ids with a note, and tern's byte-level models stay as they
were."""

import contextlib
import io
import shutil

import numpy as np
import pytest

from tern_fpga.contracts import paths
from tern_fpga.contracts.export_format import read_export, write_export
from tern_fpga.contracts.tokenizer import JsonTokenizer

from support.text_tokenizers import llama_like, word_level

VOCAB = 320   # a vocabulary that is not bytes and fits the micro preset's embeddings at d=32


@pytest.fixture(scope="session")
def bare_checkpoint(tmp_path_factory):
    """A random model of vocabulary 320 (one layer, d=32), without a tokenizer."""
    import torch  # here, not at the top: the other command tests do without it

    from tern_fpga.quant.config import HGRNBitConfig
    from tern_fpga.quant.model import HGRNBitForCausalLM

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("bare")
    config = HGRNBitConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1)
    HGRNBitForCausalLM(config).save_pretrained(folder)
    return folder


def with_tokenizer(bare, folder, tokenizer):
    """A copy of the checkpoint folder ``bare`` with ``tokenizer`` as its tokenizer.json."""
    shutil.copytree(bare, folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="session")
def words_export(bare_checkpoint, tmp_path_factory):
    """``tern export`` of the checkpoint with a word-level tokenizer.json (read-only); the
    command's output is in ``words_export.parent / "export.out"``."""
    from tern_fpga.commands.cli import main  # as `run` calls it, for a session fixture

    folder = with_tokenizer(bare_checkpoint, tmp_path_factory.mktemp("words") / "checkpoint",
                            word_level(VOCAB))
    path = folder.parent / "words.tern"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["export", str(folder), "--preset", "micro", "-o", str(path)]) == 0
    (folder.parent / "export.out").write_text(out.getvalue())
    return path


@pytest.fixture(scope="session")
def words():
    return JsonTokenizer(word_level(VOCAB).to_str().encode(), "words")


def generated_ids(run, export, prompt_ids, count):
    status, out, err = run("golden", export, "--ids", ",".join(map(str, prompt_ids)), "-n",
                           count)
    assert status == 0, err
    return [int(token) for token in out.splitlines()[0].rstrip(",").split(",")]


def test_export_carries_the_checkpoint_tokenizer(words_export):
    folder = words_export.parent / "checkpoint"
    section = read_export(words_export).sections["tokenizer"]
    assert section.tobytes() == (folder / "tokenizer.json").read_bytes()
    summary = (words_export.parent / "export.out").read_text()
    assert summary.startswith(f"wrote {words_export} (") and \
        summary.endswith("; tokenizer: tokenizer.json (320 tokens)\n"), summary


def test_golden_prints_text_with_the_carried_tokenizer(words_export, words, run):
    prompt = "hello world once upon a time"
    status, out, err = run("golden", words_export, "--prompt", prompt, "-n", 16)
    assert status == 0 and err == ""
    ids = generated_ids(run, words_export, words.encode(prompt), 16)
    text = out.splitlines()[0]
    assert text == words.decode(words.encode(prompt) + ids)
    assert text.startswith(prompt + " ") and len(text.split()) > len(prompt.split())


def test_generate_streams_characters_split_over_tokens(words_export, tmp_path, run, stand_in):
    """``tern generate`` on a stand-in board that answers with the tokens of a text whose
    characters are several byte tokens each (the released models' Llama tokenizer does that)."""
    llama = llama_like(VOCAB)
    export = read_export(words_export)
    export.sections["tokenizer"] = np.frombuffer(llama.to_str().encode(), np.uint8)
    path = tmp_path / "llama.tern"
    write_export(path, export)
    answer = llama.encode("hello world 日本 é").ids[2:]     # after <s> ▁hello
    stand_in.answer = answer
    status, out, err = run("generate", path, "--port", "/dev/ttyUSB9", "--prompt", "hello", "-n",
                           len(answer))
    assert status == 0, err
    assert out.splitlines()[0] == "hello world 日本 é"
    assert stand_in.prompt == llama.encode("hello").ids


def test_a_tokenizer_of_another_vocabulary_is_refused_at_export(bare_checkpoint, tmp_path,
                                                                one_line_error):
    folder = with_tokenizer(bare_checkpoint, tmp_path / "checkpoint", word_level(300))
    assert one_line_error(1, "export", folder, "--preset", "micro", "-o", tmp_path / "m.tern") == (
        f"{folder}/tokenizer.json has 300 tokens but the model's vocab_size is 320: it is another "
        f"model's tokenizer; use the checkpoint's own tokenizer.json, or remove it to get token "
        f"ids")
    assert not (tmp_path / "m.tern").exists()


def test_a_tokenizer_of_another_vocabulary_is_refused_by_golden(words_export, tmp_path,
                                                               one_line_error):
    export = read_export(words_export)
    export.sections["tokenizer"] = np.frombuffer(word_level(300).to_str().encode(), np.uint8)
    path = tmp_path / "other.tern"
    write_export(path, export)
    assert one_line_error(1, "golden", path, "--prompt", "hello") == (
        f"{path}'s 'tokenizer' section has 300 tokens but the model's vocab_size is 320: it is "
        f"another model's tokenizer; use the checkpoint's own tokenizer.json, or remove it to get "
        f"token ids")


def test_a_checkpoint_without_a_tokenizer_gives_token_ids_with_a_note(bare_checkpoint, tmp_path,
                                                                      run, one_line_error):
    path = tmp_path / "bare.tern"
    status, out, err = run("export", bare_checkpoint, "--preset", "micro", "-o", path)
    assert status == 0 and out.rstrip().endswith("; tokenizer: none (token ids)")
    assert err == (f"note: {bare_checkpoint} has no tokenizer.json and its vocabulary is 320 "
                   f"tokens, not bytes: `tern golden` and `tern generate` will print token ids; "
                   f"put the checkpoint's own tokenizer.json there and export again for text\n")
    assert "tokenizer" not in read_export(path).sections
    status, out, err = run("golden", path, "--ids", "3,4", "-n", 5)
    assert status == 0 and len(out.splitlines()[0].rstrip(",").split(",")) == 5
    assert err == (f"note: {path} carries no tokenizer and its vocabulary is 320 tokens, not "
                   f"bytes: printing token ids (export from a checkpoint folder with its "
                   f"tokenizer.json for text)\n")
    assert one_line_error(1, "golden", path, "--prompt", "hello").startswith(
        "--prompt needs a tokenizer: this export's model has vocab_size 320 (not byte-level)")


@pytest.mark.skipif(not (paths.CHECKPOINTS / "micro" / "config.json").exists(),
                    reason="needs the committed checkpoints/micro")
def test_the_reference_checkpoint_stays_byte_level(tmp_path, run):
    """checkpoints/micro (config.json + model.safetensors, as Hugging Face writes them, no
    tokenizer.json): byte-level text, a character of several bytes printed whole."""
    path = tmp_path / "micro.tern"
    status, out, err = run("export", paths.CHECKPOINTS / "micro", "--preset", "micro", "-o",
                           path)
    assert status == 0 and err == "" and out.rstrip().endswith("; tokenizer: byte-level")
    assert "tokenizer" not in read_export(path).sections
    prompt = "Once upon a time, é"
    status, out, err = run("golden", path, "--prompt", prompt, "-n", 24)
    assert status == 0 and err == ""
    ids = generated_ids(run, path, list(prompt.encode()), 24)
    assert out.rsplit("\n[golden model:", 1)[0] == \
        bytes(list(prompt.encode()) + ids).decode(errors="replace")
