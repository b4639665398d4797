"""The stdlib corpus builder on a small made-up standard library (no real stdlib: seconds)."""

import hashlib
import json
import lzma

from tern_fpga.quant.data import DOCUMENT_SEPARATOR, is_heldout, load_documents
from tern_fpga.quant.presets import CORPORA
from tern_fpga.quant.stdlib_corpus import (
    CORPUS_NAME,
    MANIFEST_NAME,
    build_stdlib_corpus,
    stdlib_sources,
)

TOPICS = {"while": "The while statement\r\nloops.", "assert": "Assert statements."}


def _fake_stdlib(root):
    files = {
        "os.py": b"import sys\r\n\"\"\"os\"\"\"\n",
        "json/__init__.py": b"# json\n",
        "json/decoder.py": b"x = 1\x1e\n",           # the separator byte is removed
        "json/copy_of_init.py": b"# json\n",           # a duplicate: kept once
        "empty.py": b"\n\n",                           # nothing in it: left out
        "site-packages/numpy/core.py": b"third party\n",
        "__pycache__/os.py": b"cache\n",
        "pydoc_data/topics.py": b"topics = {}\n",      # the topics are added as text
        "README.txt": b"not python\n",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_sources_are_sorted_and_filtered(tmp_path):
    stdlib = _fake_stdlib(tmp_path / "lib")
    assert [p.as_posix() for p in stdlib_sources(stdlib)] == [
        "empty.py", "json/__init__.py", "json/copy_of_init.py", "json/decoder.py", "os.py"]


def test_build_is_deterministic_and_loadable(tmp_path):
    stdlib = _fake_stdlib(tmp_path / "lib")
    first = build_stdlib_corpus(tmp_path / "a", stdlib, TOPICS)
    second = build_stdlib_corpus(tmp_path / "b", stdlib, dict(reversed(TOPICS.items())))
    text = lzma.decompress((tmp_path / "a" / CORPUS_NAME).read_bytes())
    assert text == lzma.decompress((tmp_path / "b" / CORPUS_NAME).read_bytes())
    assert first["sha256"] == second["sha256"] == hashlib.sha256(text).hexdigest()
    assert first["sources"] == ["topic:assert", "topic:while", "json/__init__.py",
                                "json/decoder.py", "os.py"]
    documents = load_documents(tmp_path / "a" / CORPUS_NAME)
    assert documents == [b"Assert statements.\n", b"The while statement\nloops.\n",
                         b"# json\n", b"x = 1\n", b'import sys\n"""os"""\n']
    assert text.count(DOCUMENT_SEPARATOR) == len(documents) == first["documents"]
    assert first["heldout_sources"] == [name for name, document in
                                        zip(first["sources"], documents) if is_heldout(document)]
    assert json.loads((tmp_path / "a" / MANIFEST_NAME).read_text()) == first


def test_committed_manifest_describes_the_stdlib_corpus():
    manifest = json.loads(CORPORA["stdlib"].with_name(MANIFEST_NAME).read_text())
    assert manifest["python_version"].startswith("3.11.7")
    assert manifest["documents"] == len(manifest["sources"]) > 1500
    assert manifest["bytes"] > 20_000_000
    assert "pydoc_data/topics.py" not in manifest["sources"]
    assert len(manifest["heldout_sources"]) == manifest["heldout_documents"]
