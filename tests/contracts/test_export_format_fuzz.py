"""Hostile .tern files: damage that gets past the CRCs (they are recomputed after each change)
still ends in one ExportFormatError line, from the reader, the compiled-sections check and
`tern inspect`'s report alike, never another exception."""

import json
import struct
import zlib

import numpy as np
import pytest

from tern_fpga.commands.inspect import describe, format_text
from tern_fpga.contracts.export_format import (
    ALIGNMENT,
    FIXED_HEADER,
    MAGIC,
    ExportFile,
    ExportFormatError,
    TernExport,
    check_compiled,
    read_export,
    write_export,
)
from tern_fpga.contracts.packing import pack_2bit
from tern_fpga.contracts.params import PRESETS

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

PARAMS = PRESETS["micro"].replace(name="fuzz", weight_memory_words=64, vector_memory_words=256,
                                  vector_work_words=128, embedding_memory_words=512,
                                  program_words=32)


def small_export() -> TernExport:
    """Every section the compiler writes, small, plus one of each other dtype."""
    rng = np.random.default_rng(0)
    sections = {
        "program": rng.integers(0, 1 << 32, 4 * 8, dtype=np.uint32),
        "entry_points": np.array([0, 3], dtype=np.uint32),
        "weights": pack_2bit(rng.integers(-1, 2, 4 * 8 * 16)),
        "vector_init": rng.integers(-1000, 1000, 64, dtype=np.int32),
        "constants": rng.integers(1, 1 << 40, 12, dtype=np.int64),
        "embeddings": rng.integers(-300, 300, (16, 8), dtype=np.int16),
        "scales": rng.standard_normal((2, 3)).astype(np.float32),
    }
    config = {"vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1}
    return TernExport(config, PARAMS, sections, {"isa_version": 1, "memory_map": {"x": [0, 8]}})


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "small.tern"
    write_export(path, small_export(), packing="base3")
    check_compiled(read_export(path), path)  # the undamaged file passes every check
    return path.read_bytes()


def _parts(data: bytes):
    header_length = FIXED_HEADER.unpack_from(data)[3]
    header = json.loads(data[FIXED_HEADER.size:FIXED_HEADER.size + header_length])
    return header, header["sections"][0]["offset"]


def _paths(value, prefix=()):
    """Every place in a JSON value, the value itself first."""
    yield prefix
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from _paths(inner, prefix + (key,))


def _assemble(header_json: bytes, body: bytes, data_start: int, fields: dict) -> bytes:
    """A file of ``header_json`` before ``body`` (the section bytes, which start at
    ``data_start``: moved on by whole alignment units if the header grew), with a header CRC
    that matches whatever the header holds."""
    start = FIXED_HEADER.size + len(header_json)
    shift = max(0, -(-(start - data_start) // ALIGNMENT) * ALIGNMENT)
    header_json = header_json.ljust(data_start + shift - FIXED_HEADER.size)
    values = {"version": 1, "flags": 0, "header_length": len(header_json),
              "file_length": data_start + shift + len(body), "reserved": 0, **fields}
    fixed = FIXED_HEADER.pack(MAGIC, values["version"], values["flags"],
                              values["header_length"], values["file_length"],
                              values["reserved"], 0)[:-4]
    crc = zlib.crc32(header_json, zlib.crc32(fixed))
    return fixed + struct.pack("<I", crc) + header_json + body


JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70_000), st.integers(-2 ** 70, 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["uint8", "int64", "float64", "base3", "raw", "2bit", "program",
                     "weights", "micro"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=6)
FIXED_FIELDS = st.fixed_dictionaries({}, optional={
    "version": st.integers(0, 3), "flags": st.integers(0, 3), "reserved": st.integers(0, 3),
    "file_length": st.integers(0, 1 << 20), "header_length": st.integers(0, 1 << 16)})


def _rarely(draw) -> bool:
    return draw(st.integers(0, 9)) == 0


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """``data`` with up to three values of its JSON header replaced (mostly deep inside it),
    maybe a section's bytes changed and its CRC updated, and, rarely, the fixed header's
    fields changed, the header nested too deep or the file cut short."""
    header, data_start = _parts(data)
    body = bytearray(data[data_start:])
    for _ in range(draw(st.integers(0, 3))):
        places = list(_paths(header))[0 if _rarely(draw) else 1:]
        if not places:
            break
        place = draw(st.sampled_from(places))
        if not place:
            header = draw(JSON_VALUES)
            continue
        target = header
        for key in place[:-1]:
            target = target[key]
        target[place[-1]] = draw(JSON_VALUES)
    if draw(st.booleans()) and isinstance(header, dict) and isinstance(
            header.get("sections"), list):
        # Change a section's bytes and store their new CRC: only the contents are wrong.
        entries = [e for e in header["sections"] if isinstance(e, dict)
                   and type(e.get("offset")) is int and type(e.get("length")) is int
                   and 0 <= e["offset"] - data_start < e["offset"] - data_start + e["length"]
                   <= len(body)]
        if entries:
            entry = draw(st.sampled_from(entries))
            start = entry["offset"] - data_start
            for _ in range(draw(st.integers(1, 8))):
                body[start + draw(st.integers(0, entry["length"] - 1))] = draw(
                    st.integers(0, 255))
            entry["crc32"] = zlib.crc32(bytes(body[start:start + entry["length"]]))
    if _rarely(draw):
        depth = draw(st.integers(100, 50_000))
        header_json = b'{"model_config": ' + b"[" * depth + b"]" * depth + b"}"
    else:
        header_json = json.dumps(header).encode()
    fields = draw(FIXED_FIELDS) if _rarely(draw) else {}
    damaged_file = _assemble(header_json, bytes(body), data_start, fields)
    return damaged_file[:draw(st.integers(1, len(damaged_file) - 1))] if _rarely(draw) \
        else damaged_file


def test_damage_past_the_crcs_is_one_clear_error(original, tmp_path):
    path = tmp_path / "damaged.tern"

    @hypothesis.settings(max_examples=400, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(damaged(original))
    def read_anything(data):
        path.write_bytes(data)
        try:
            export_file = ExportFile(path)
            format_text(describe(export_file))  # tern inspect shows what it can
            check_compiled(export_file.to_export(), path)
        except ExportFormatError as error:
            assert str(error).startswith(f"{path}: ") and "\n" not in str(error)

    read_anything()
