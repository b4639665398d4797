"""Training text: a byte-level English corpus that ships with the repository.

The models are byte-level: the vocabulary is the 256 byte values and a token *is* a byte, so no
tokenizer has to be built, shipped or put in hardware. The text is the Python standard library's
own documentation, which every machine with Python has offline:

- the reference-manual topics of :mod:`pydoc_data.topics` (what ``help("assert")`` prints), one
  document per topic;
- the docstrings of the standard-library modules, read with :mod:`ast` (nothing is imported), one
  document per module, laid out like ``help()`` output.

Documents differ between Python versions, so :func:`build_corpus` is run once and its output is
shipped as ``quant/data/corpus.txt.xz`` with a manifest ``quant/data/corpus.json`` that records
the Python version, the module list and the SHA-256 of the text. Training reads the shipped file on
any machine, so a run is reproducible regardless of the Python it runs under.

Format: UTF-8 documents, each followed by the separator byte ``0x1E`` (ASCII record separator,
which the sources never contain); the models learn it as "end of document".

Split: a document is held out when the first 8 bytes of its SHA-256, read as a big-endian integer,
are divisible by 20 (about 5% of documents). The rule depends on the document alone, so the split
is stable under reordering and does not shift when a document is added or removed.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import json
import lzma
import math
import platform
import pydoc_data.topics
import sys
import sysconfig
from pathlib import Path

import torch
import torch.nn.functional as F

from tern_fpga.contracts.errors import TernError

__all__ = [
    "CORPUS_PATH",
    "DOCUMENT_SEPARATOR",
    "HELDOUT_MODULUS",
    "MANIFEST_PATH",
    "CorpusSplits",
    "bits_per_byte",
    "build_corpus",
    "is_heldout",
    "load_documents",
    "load_splits",
    "random_batch",
    "split_documents",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
CORPUS_PATH = DATA_DIR / "corpus.txt.xz"
MANIFEST_PATH = DATA_DIR / "corpus.json"
DOCUMENT_SEPARATOR = b"\x1e"
HELDOUT_MODULUS = 20

# Standard-library folders that hold tests, bundled wheels or build configuration, not
# documentation prose.
_SKIPPED_FOLDERS = {"test", "tests", "idle_test", "site-packages", "__pycache__", "_bundled"}


# Building ---------------------------------------------------------------------------------------


def _object_documents(node, prefix):
    """``(header, docstring)`` of every documented class and function under ``node``, in
    source order, with dotted names (``Class.method``) so nested definitions stay readable."""
    for child in node.body:
        if isinstance(child, ast.ClassDef):
            name = f"{prefix}{child.name}"
            bases = ", ".join(ast.unparse(base) for base in child.bases)
            header = f"class {name}({bases})" if bases else f"class {name}"
            docstring = ast.get_docstring(child, clean=True)
            if docstring:
                yield header, docstring
            yield from _object_documents(child, f"{name}.")
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(child, clean=True)
            if docstring:
                yield f"{prefix}{child.name}({ast.unparse(child.args)})", docstring


def _module_document(module_name, source):
    """One module's docstrings as one ``help()``-like document, or ``None`` if it has none."""
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree, clean=True)
    objects = [
        header + "\n" + "\n".join(f"    {line}" if line else "" for line in text.splitlines())
        for header, text in _object_documents(tree, "")]
    if not docstring and not objects:
        return None
    parts = [f"{module_name}\n\n{docstring}" if docstring else module_name, *objects]
    return "\n\n".join(parts)


def _stdlib_modules(stdlib):
    """``(module name, path)`` of every standard-library source file worth reading, sorted."""
    modules = []
    for path in stdlib.rglob("*.py"):
        relative = path.relative_to(stdlib)
        if any(part in _SKIPPED_FOLDERS or part.startswith("config-") for part in relative.parts):
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules.append((".".join(parts), path))
    return sorted(modules)


def _normalise(text):
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n") + "\n"
    return text.encode("utf-8").replace(DOCUMENT_SEPARATOR, b"")


def build_corpus(output_dir: Path | str = DATA_DIR) -> dict:
    """Rebuild the corpus from the running Python's documentation and write it with a manifest.

    Run it as ``python -m tern_fpga.quant.data --rebuild``. The result depends on the Python version
    (recorded in the manifest); the shipped corpus is the reference for training.

    Parameters
    ----------
    output_dir : path
        Folder to write ``corpus.txt.xz`` and ``corpus.json`` into.

    Returns
    -------
    dict
        The manifest that was written.
    """

    documents, seen = [], set()

    def add(text):
        data = _normalise(text)
        if data not in seen:
            seen.add(data)
            documents.append(data)

    for topic in sorted(pydoc_data.topics.topics):
        add(pydoc_data.topics.topics[topic])
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    modules = []
    for module_name, path in _stdlib_modules(stdlib):
        try:
            document = _module_document(module_name, path.read_bytes())
        except (SyntaxError, ValueError):
            continue  # a few stdlib files are templates or target other Python versions
        if document:
            modules.append(module_name)
            add(document)

    text = b"".join(document + DOCUMENT_SEPARATOR for document in documents)
    heldout = [document for document in documents if is_heldout(document)]
    manifest = {
        "description": "pydoc_data.topics (one document per topic, sorted by name) followed by "
                       "the docstrings of standard-library modules (one document per module, "
                       "sorted by name), each document followed by byte 0x1E",
        "python_version": sys.version,
        "python_implementation": platform.python_implementation(),
        "pydoc_topics": len(pydoc_data.topics.topics),
        "modules": modules,
        "documents": len(documents),
        "heldout_documents": len(heldout),
        "heldout_rule": f"int.from_bytes(sha256(document)[:8], 'big') % {HELDOUT_MODULUS} == 0",
        "bytes": len(text),
        "heldout_bytes": sum(len(document) + 1 for document in heldout),
        "sha256": hashlib.sha256(text).hexdigest(),
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / CORPUS_PATH.name).write_bytes(
        lzma.compress(text, preset=9 | lzma.PRESET_EXTREME))
    (output_dir / MANIFEST_PATH.name).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# Loading and splitting --------------------------------------------------------------------------


def load_documents(path: Path | str = CORPUS_PATH) -> list[bytes]:
    """The corpus's documents (without separators), checked against the manifest beside it.

    Raises
    ------
    TernError
        If the file is missing or its SHA-256 differs from the manifest's.
    """
    path = Path(path)
    manifest_path = path.with_name(MANIFEST_PATH.name)
    try:
        text = lzma.decompress(path.read_bytes())
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError as error:
        raise TernError(f"corpus file {error.filename} is missing; restore it from git or "
                        f"rebuild it with 'python -m tern_fpga.quant.data --rebuild'") from None
    digest = hashlib.sha256(text).hexdigest()
    if digest != manifest["sha256"]:
        raise TernError(f"corpus {path} has SHA-256 {digest}, but {manifest_path} expects "
                        f"{manifest['sha256']}; restore both files from git")
    if not text.endswith(DOCUMENT_SEPARATOR):
        raise TernError(f"corpus {path} does not end with the document separator 0x1E")
    return text[:-1].split(DOCUMENT_SEPARATOR)


def is_heldout(document: bytes) -> bool:
    """Whether a document belongs to the held-out split (about 1 in ``HELDOUT_MODULUS``)."""
    digest = hashlib.sha256(document).digest()
    return int.from_bytes(digest[:8], "big") % HELDOUT_MODULUS == 0


def split_documents(documents: list[bytes]) -> tuple[bytes, bytes]:
    """``(train, heldout)`` byte streams: the documents of each split in corpus order, each
    followed by the separator."""
    train, heldout = [], []
    for document in documents:
        (heldout if is_heldout(document) else train).append(document + DOCUMENT_SEPARATOR)
    return b"".join(train), b"".join(heldout)


@dataclasses.dataclass(frozen=True)
class CorpusSplits:
    """The two splits as ``uint8`` tensors, with the SHA-256 of the whole corpus.

    Members
    -------
    train : torch.Tensor
        Training bytes, shape ``[N]``, dtype ``uint8``.
    heldout : torch.Tensor
        Held-out bytes, shape ``[M]``, dtype ``uint8``.
    sha256 : str
        SHA-256 of the uncompressed corpus, recorded in training logs.
    """

    train: torch.Tensor
    heldout: torch.Tensor
    sha256: str


def load_splits(path: Path | str = CORPUS_PATH) -> CorpusSplits:
    """Load the shipped corpus and split it (see the module docstring for the rule)."""
    documents = load_documents(path)
    train, heldout = split_documents(documents)
    digest = hashlib.sha256(b"".join(d + DOCUMENT_SEPARATOR for d in documents)).hexdigest()
    return CorpusSplits(train=_as_tensor(train), heldout=_as_tensor(heldout), sha256=digest)


def _as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


# Batches and evaluation -------------------------------------------------------------------------


def random_batch(data: torch.Tensor, batch_size: int, seq_len: int,
                 generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` windows of ``seq_len`` bytes at uniformly random offsets.

    Parameters
    ----------
    data : torch.Tensor
        ``uint8`` bytes, on any device.
    batch_size, seq_len : int
        Shape of the batch.
    generator : torch.Generator
        A CPU generator; the offsets, and so the batch, depend on its state alone.

    Returns
    -------
    torch.Tensor
        ``int64`` token ids of shape ``[batch_size, seq_len]`` on ``data``'s device.
    """
    if len(data) < seq_len:
        raise ValueError(f"seq_len {seq_len} is longer than the data ({len(data)} bytes)")
    offsets = torch.randint(0, len(data) - seq_len + 1, (batch_size,), generator=generator)
    index = offsets[:, None] + torch.arange(seq_len)
    return data[index.to(data.device)].long()


@torch.no_grad()
def bits_per_byte(model: torch.nn.Module, data: torch.Tensor, seq_len: int = 256,
                  batch_size: int = 64, max_bytes: int | None = None) -> float:
    """Mean next-byte cross entropy of ``model`` on ``data``, in bits per byte.

    The data is cut into consecutive windows of ``seq_len`` bytes (the last one may be shorter)
    and each window is run from a zero state, as in training; every byte of a window except the
    first is predicted from the bytes before it in the same window and scored.

    Parameters
    ----------
    model : torch.nn.Module
        Called as ``model(input_ids)``; returns an object with ``.logits`` ``[B, T, 256]``. It
        runs on the device of its parameters and is put back in its training mode afterwards.
    data : torch.Tensor
        ``uint8`` bytes.
    seq_len, batch_size : int
        Window length and windows per forward pass.
    max_bytes : int, optional
        Evaluate only the first ``max_bytes`` bytes (for quick checks).

    Returns
    -------
    float
        Bits per predicted byte; 8.0 is a uniform guess.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2 to predict anything, not {seq_len}")
    if max_bytes is not None:
        data = data[:max_bytes]
    device = next(model.parameters()).device
    full = len(data) // seq_len * seq_len
    windows = list(data[:full].view(-1, seq_len).split(batch_size))
    if len(data) - full >= 2:
        windows.append(data[full:][None])
    was_training = model.training
    model.eval()
    total_nats, total_bytes = 0.0, 0
    try:
        for window in windows:
            ids = window.to(device).long()
            logits = model(ids).logits.float()
            # Summed in float64 so that long texts do not lose the last digits.
            total_nats += F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                reduction="none").double().sum().item()
            total_bytes += ids[:, 1:].numel()
    finally:
        model.train(was_training)
    if total_bytes == 0:
        raise ValueError(f"need at least 2 bytes of data to evaluate, got {len(data)}")
    return total_nats / total_bytes / math.log(2)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tern_fpga.quant.data",
        description="Show the shipped corpus, or rebuild it from this Python's documentation.")
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild quant/data/corpus.txt.xz and corpus.json")
    args = parser.parse_args(argv)
    if args.rebuild:
        manifest = build_corpus()
        print(f"wrote {CORPUS_PATH} ({manifest['documents']} documents, "
              f"{manifest['bytes']} bytes, sha256 {manifest['sha256']})")
    splits = load_splits()
    print(f"train {len(splits.train)} bytes, held-out {len(splits.heldout)} bytes, "
          f"sha256 {splits.sha256}")


if __name__ == "__main__":
    main()
