"""The ``stdlib`` corpus: the Python standard library's own sources and reference manual.

Tens of megabytes of text that every machine with Python has offline, for models too large for
the 2.7 MB documentation corpus of :mod:`tern_fpga.quant.data`:

- the reference-manual topics of :mod:`pydoc_data.topics` (what ``help("for")`` prints), one
  document per topic, sorted by name;
- every ``.py`` file of the standard library (tests included; ``site-packages``,
  ``__pycache__`` and ``pydoc_data/topics.py``, which is the topics above as Python literals,
  left out), one document per file, sorted by relative path, as raw bytes with line endings
  made ``\\n``. The docstrings of the documentation corpus are inside these files.

Format, separator and held-out rule are those of :mod:`tern_fpga.quant.data`: each document is
followed by byte ``0x1E`` (removed from the documents, where only a handful of test files have
it), identical documents are kept once, and a document is held out when its SHA-256 is divisible
by 20, so the split is by file and does not depend on the order.

The corpus (about 37 MB, 7 MB as xz) is not in git: ``python -m tern_fpga.quant.stdlib_corpus``
writes ``quant/data/stdlib/corpus.txt.xz`` and checks it against the committed manifest
``quant/data/stdlib/corpus.json`` (Python version, file list, SHA-256). The result depends on the
Python version; the manifest's was built with CPython 3.11.7.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import platform
import pydoc_data.topics
import sys
import sysconfig
from pathlib import Path

from tern_fpga.contracts.errors import TernError
from tern_fpga.quant.data import DATA_DIR, DOCUMENT_SEPARATOR, HELDOUT_MODULUS, is_heldout

__all__ = ["STDLIB_CORPUS_DIR", "build_stdlib_corpus", "stdlib_documents", "stdlib_sources"]

STDLIB_CORPUS_DIR = DATA_DIR / "stdlib"
CORPUS_NAME = "corpus.txt.xz"
MANIFEST_NAME = "corpus.json"
# Folders that hold installed third-party packages or byte code, not the standard library.
_SKIPPED_FOLDERS = {"site-packages", "dist-packages", "__pycache__"}
# Files whose text is already in the corpus in readable form (the pydoc topics).
_SKIPPED_FILES = {"pydoc_data/topics.py"}


def stdlib_sources(stdlib: Path) -> list[Path]:
    """Relative paths of the standard library's ``.py`` files that go into the corpus, sorted
    by their POSIX form."""
    stdlib = Path(stdlib)
    if not stdlib.is_dir():
        raise TernError(f"standard-library folder {stdlib} does not exist; pass the folder "
                        f"that sysconfig.get_paths()['stdlib'] names")
    paths = []
    for path in stdlib.rglob("*.py"):
        relative = path.relative_to(stdlib)
        if any(part in _SKIPPED_FOLDERS for part in relative.parts[:-1]):
            continue
        if relative.as_posix() in _SKIPPED_FILES or not path.is_file():
            continue
        paths.append(relative)
    return sorted(paths, key=lambda p: p.as_posix())


def _normalise(data: bytes) -> bytes:
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(DOCUMENT_SEPARATOR, b"")
    return data.strip(b"\n") + b"\n"


def stdlib_documents(stdlib: Path, topics: dict[str, str]) -> tuple[list[bytes], list[str]]:
    """The corpus's documents and, for each, its source (``topic:NAME`` or the relative path);
    duplicates are dropped (the first occurrence is kept)."""
    documents, names, seen = [], [], set()

    def add(data, name):
        data = _normalise(data)
        if data.strip() and data not in seen:
            seen.add(data)
            documents.append(data)
            names.append(name)

    for topic in sorted(topics):
        add(topics[topic].encode("utf-8"), f"topic:{topic}")
    for relative in stdlib_sources(stdlib):
        add((Path(stdlib) / relative).read_bytes(), relative.as_posix())
    return documents, names


def build_stdlib_corpus(output_dir: Path | str = STDLIB_CORPUS_DIR,
                        stdlib: Path | str | None = None,
                        topics: dict[str, str] | None = None) -> dict:
    """Build the corpus and write ``corpus.txt.xz`` and ``corpus.json`` into ``output_dir``.

    Parameters
    ----------
    output_dir : path
        Where to write (created if missing).
    stdlib : path, optional
        The standard-library folder; default this Python's.
    topics : dict, optional
        Topic name to text; default :data:`pydoc_data.topics.topics`.

    Returns
    -------
    dict
        The manifest that was written.
    """
    if stdlib is None:
        stdlib = sysconfig.get_paths()["stdlib"]
    if topics is None:
        topics = pydoc_data.topics.topics
    documents, names = stdlib_documents(Path(stdlib), topics)
    text = b"".join(document + DOCUMENT_SEPARATOR for document in documents)
    heldout = [(d, n) for d, n in zip(documents, names) if is_heldout(d)]
    manifest = {
        "description": "pydoc_data.topics (one document per topic, sorted by name) followed by "
                       "every .py file of the standard library (one document per file, sorted "
                       "by path; site-packages, __pycache__ and pydoc_data/topics.py left "
                       "out), line endings made \\n, byte 0x1E removed, duplicates dropped, "
                       "each document followed by byte 0x1E",
        "python_version": sys.version,
        "python_implementation": platform.python_implementation(),
        "documents": len(documents),
        "sources": names,
        "heldout_documents": len(heldout),
        "heldout_sources": [name for _, name in heldout],
        "heldout_rule": f"int.from_bytes(sha256(document)[:8], 'big') % {HELDOUT_MODULUS} == 0",
        "bytes": len(text),
        "heldout_bytes": sum(len(document) + 1 for document, _ in heldout),
        "sha256": hashlib.sha256(text).hexdigest(),
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / CORPUS_NAME).write_bytes(lzma.compress(text, preset=6))
    (output_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tern_fpga.quant.stdlib_corpus",
        description="Build the stdlib corpus (standard-library sources and pydoc topics) into "
                    "quant/data/stdlib/ and compare its SHA-256 with the committed manifest.")
    parser.add_argument("-o", "--output", default=str(STDLIB_CORPUS_DIR), metavar="DIR")
    args = parser.parse_args(argv)
    manifest_path = Path(args.output) / MANIFEST_NAME
    expected = json.loads(manifest_path.read_text())["sha256"] if manifest_path.exists() \
        else None
    manifest = build_stdlib_corpus(args.output)
    print(f"wrote {Path(args.output) / CORPUS_NAME}: {manifest['documents']} documents, "
          f"{manifest['bytes']:,} bytes ({manifest['heldout_bytes']:,} held out), "
          f"sha256 {manifest['sha256']}")
    if expected is not None and expected != manifest["sha256"]:
        print(f"note: the manifest there had sha256 {expected} (built by "
              f"another Python version?); it was overwritten", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
