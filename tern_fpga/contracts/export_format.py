"""The ``.tern`` export container: one file that holds a compiled model for one accelerator build.

The compiler (``quant/compiler.py``) decides *what* goes in (program, weight image, constants,
...); this module only stores named NumPy arrays with the model configuration and the
accelerator parameters they were compiled for, reads them back, and refuses a file that is
damaged, cut short, from an unknown format version or for other accelerator parameters.
``docs/export-format.md`` describes the bytes for readers in other languages.

The layout, all integers little-endian::

    0   magic          8 bytes  89 54 45 52 4e 0d 0a 1a  ("\\x89TERN\\r\\n\\x1a")
    8   version        uint16   format version (1)
    10  flags          uint16   0 (no flags are defined)
    12  header_length  uint32   bytes of the JSON header that follows
    16  file_length    uint64   bytes of the whole file
    24  reserved       uint32   0
    28  header_crc32   uint32   CRC-32 of bytes 0..27 followed by the JSON header
    32  JSON header    (UTF-8), then zero padding; each section's bytes start at a multiple of 64.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

import tern_fpga
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.isa import WORDS_PER_INSTRUCTION
from tern_fpga.contracts.output_paths import OutputKind, check_output_file
from tern_fpga.contracts.packing import pack_2bit, pack_base3, unpack_2bit, unpack_base3
from tern_fpga.contracts.params import AcceleratorParameters

__all__ = [
    "ALIGNMENT",
    "COMPILED_SECTIONS",
    "DTYPES",
    "EXPORT_KIND",
    "FORMAT_VERSION",
    "MAGIC",
    "READABLE_VERSIONS",
    "REQUIRED_SECTIONS",
    "WEIGHT_PACKINGS",
    "ExportFile",
    "ExportFormatError",
    "Section",
    "TernExport",
    "check_compiled",
    "read_export",
    "write_export",
]

MAGIC = b"\x89TERN\r\n\x1a"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)
ALIGNMENT = 64
FIXED_HEADER = struct.Struct("<8sHHIQII")
# Section element types: the name stored in the file, always little-endian.
DTYPES = {name: np.dtype(name).newbyteorder("<") for name in (
    "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64")}
REQUIRED_SECTIONS = ("program", "weights")
# The sections ``tern export`` writes that the golden model and the host driver read.
COMPILED_SECTIONS = ("program", "entry_points", "weights", "vector_init", "constants",
                     "embeddings")
WEIGHT_PACKINGS = ("2bit", "base3")
_ENCODINGS = ("raw", "base3")
_SECTION_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_HEADER_KEYS = ("model_config", "params", "params_hash", "metadata", "sections")


class ExportFormatError(TernError):
    """A ``.tern`` file that cannot be used: the message says what is wrong and what to do."""


# An existing file that ``tern export`` may write over.
EXPORT_KIND = OutputKind.starting_with("a .tern export", MAGIC)


@dataclasses.dataclass(eq=False)
class TernExport:
    """A compiled model: what a ``.tern`` file holds.

    Parameters
    ----------
    model_config : dict
        The model's configuration (``config.json`` of the checkpoint, as JSON values).
    params : AcceleratorParameters
        The accelerator build the contents were compiled for.
    sections : dict of str to numpy.ndarray
        Named arrays, in file order. ``"program"`` (uint32 or uint64 instruction words) and
        ``"weights"`` (uint8 bytes of the weight-memory image, 2-bit code) are required.
    metadata : dict
        JSON values: ``source_checkpoint`` and ``source_sha256`` by convention, anything else
        the compiler wants to keep. The writer sets ``tern_version``, ``created_utc`` and
        ``weight_packing`` in the file's copy.
    """

    model_config: dict
    params: AcceleratorParameters
    sections: dict
    metadata: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Section:
    """One row of the section table: where a named array's bytes are and how to check them."""

    name: str
    dtype: str
    shape: tuple
    offset: int
    length: int
    crc32: int
    encoding: str = "raw"

    @property
    def size(self) -> int:
        """Elements of the decoded array."""
        return math.prod(self.shape)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "shape": list(self.shape)}


def _shown(value, limit: int = 200) -> str:
    """``repr(value)``, cut short: a damaged header's values can be of any length."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _hex_hash(value: int) -> str:
    return f"0x{value:016x}"


def _align(value: int) -> int:
    return -(-value // ALIGNMENT) * ALIGNMENT


# Writing --------------------------------------------------------------------------------------


def _check_content(name: str, array) -> np.ndarray:
    if not isinstance(name, str) or not _SECTION_NAME.fullmatch(name):
        raise ValueError(f"section name {name!r} must be 1 to 64 of A-Z a-z 0-9 _ . -")
    if not isinstance(array, np.ndarray):
        raise TypeError(f"section {name!r} must be a numpy array, not {type(array).__name__}")
    dtype_name = array.dtype.name
    if dtype_name not in DTYPES:
        raise ValueError(f"section {name!r} has dtype {array.dtype}; a .tern section holds one "
                         f"of {', '.join(DTYPES)} (cast it first)")
    if name == "program" and (array.ndim != 1 or dtype_name not in ("uint32", "uint64")):
        raise ValueError(f"section 'program' must be 1-D uint32 or uint64 instruction words, "
                         f"not {array.dtype} of shape {array.shape}")
    if name == "weights" and (array.ndim != 1 or dtype_name != "uint8"):
        raise ValueError(f"section 'weights' must be the 1-D uint8 bytes of the weight image, "
                         f"not {array.dtype} of shape {array.shape}")
    return np.asarray(array, dtype=DTYPES[dtype_name], order="C")


def _encode(name: str, array: np.ndarray, encoding: str) -> tuple[dict, bytes]:
    if encoding == "base3":
        try:
            payload = pack_base3(unpack_2bit(array, 4 * array.size)).tobytes()
        except ValueError as error:
            raise ValueError(f"the weight image cannot be stored in base-3: {error}") from None
    else:
        payload = array.tobytes()
    entry = {"name": name, "dtype": array.dtype.name, "shape": list(array.shape), "offset": 0,
             "length": len(payload), "crc32": zlib.crc32(payload), "encoding": encoding}
    return entry, payload


def _json_value(value):
    # Configs often carry NumPy scalars; store them as the plain numbers they are.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not a JSON value")


def _header_bytes(header: dict) -> bytes:
    try:
        return json.dumps(header, ensure_ascii=False, allow_nan=False,
                          default=_json_value).encode()
    except (TypeError, ValueError) as error:
        raise ValueError(f"the export header must hold JSON values only: {error}") from None


def _layout(export: TernExport, packing: str) -> tuple[bytes, bytes, list[bytes], list[dict]]:
    """The fixed header, JSON header, section payloads and table, with final offsets."""
    if not isinstance(export.params, AcceleratorParameters):
        raise TypeError(f"params must be AcceleratorParameters, not {type(export.params)!r}")
    for field in ("model_config", "sections", "metadata"):
        if not isinstance(getattr(export, field), dict):
            raise TypeError(f"{field} must be a dict, not {type(getattr(export, field))!r}")
    if packing not in WEIGHT_PACKINGS:
        raise ValueError(f"weight packing must be one of {WEIGHT_PACKINGS}, not {packing!r}")
    missing = [name for name in REQUIRED_SECTIONS if name not in export.sections]
    if missing:
        raise ValueError(f"an export needs the sections {REQUIRED_SECTIONS}; missing {missing}")
    table, payloads = [], []
    for name, array in export.sections.items():
        encoding = "base3" if name == "weights" and packing == "base3" else "raw"
        entry, payload = _encode(name, _check_content(name, array), encoding)
        table.append(entry)
        payloads.append(payload)
    metadata = {**export.metadata, "tern_version": tern_fpga.__version__, "weight_packing": packing,
                "created_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    header = {"model_config": export.model_config, "params": export.params.to_dict(),
              "params_hash": _hex_hash(export.params.hash), "metadata": metadata,
              "sections": table}
    # Offsets depend on the header's length, which depends on the offsets' digits: repeat until
    # the data start no longer moves (it only grows, so this ends after a step or two).
    data_start, header_json = -1, b""
    while data_start != _align(FIXED_HEADER.size + len(header_json)):
        data_start = _align(FIXED_HEADER.size + len(header_json))
        position = data_start
        for entry in table:
            entry["offset"] = position
            position = _align(position + entry["length"])
        header_json = _header_bytes(header)
    file_length = max([FIXED_HEADER.size + len(header_json)]
                      + [entry["offset"] + entry["length"] for entry in table])
    fixed = FIXED_HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(header_json), file_length, 0, 0)
    crc = zlib.crc32(header_json, zlib.crc32(fixed[:-4]))
    return fixed[:-4] + struct.pack("<I", crc), header_json, payloads, table


def write_export(path, export: TernExport, *, packing: str = "2bit") -> None:
    """Write ``export`` to ``path`` atomically.

    The file is written beside ``path`` under a temporary name and renamed over it only when
    complete, so an interrupted write leaves the old file (or none), never half a file.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.tern`` file to write.
    export : TernExport
        The contents; ``sections`` must include ``"program"`` and ``"weights"``.
    packing : str
        ``"2bit"`` stores the weight image as it is (4 weights per byte); ``"base3"`` stores
        its weights 5 per byte (1.6 bits per weight) and the reader expands them back to the
        identical image.

    Raises
    ------
    ValueError, TypeError
        If the contents cannot be stored (see the message).
    tern_fpga.contracts.output_paths.OutputPathError
        If ``path`` is a folder, a device, a link or read-only, or its folder is missing or
        cannot be written (whatever the file holds: a caller that must not overwrite another
        kind of file checks first, as ``tern export`` does).
    OSError
        If the file cannot be written.
    """
    path = Path(path)
    fixed, header_json, payloads, table = _layout(export, packing)
    check_output_file(path, EXPORT_KIND, force=True, option=None)
    # A hidden name beside the target, so the final rename stays within one file system.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(temporary, "xb") as handle:
            handle.write(fixed + header_json)
            for entry, payload in zip(table, payloads):
                handle.write(bytes(entry["offset"] - handle.tell()))
                handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# Reading --------------------------------------------------------------------------------------


class ExportFile:
    """A ``.tern`` file whose headers and section table have been read and checked.

    Section bytes are checked only when asked for (:meth:`section_ok`, :meth:`array`), so a
    tool can show the table of a file with a damaged section.

    Parameters
    ----------
    path : str or os.PathLike
        The file to open.

    Members
    -------
    format_version : int
    file_length : int
    header : dict
        The JSON header as stored.
    params : AcceleratorParameters
    sections : dict of str to Section

    Raises
    ------
    ExportFormatError
        If the file is not a ``.tern`` file, is cut short or too long, has a damaged header, a
        format version this tern does not read, a parameters hash that does not match its
        parameters, or a section table that is missing a required section or is inconsistent.
    """

    def __init__(self, path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as file:
                data = file.read(FIXED_HEADER.size)
                size = os.fstat(file.fileno()).st_size
                self._check_fixed_header(data, size)
                # The header and its CRC first: the lengths it states are checked against the
                # file's before the sections are read, so a huge file is refused unread.
                data += file.read(self._header_length)
                self._check_frame(data, size)
                self._data = bytearray(data + file.read())
        except FileNotFoundError:
            raise ExportFormatError(f"cannot read {self.path}: no such file; make one with "
                                    f"`tern export`") from None
        except OSError as error:
            raise ExportFormatError(f"cannot read {self.path}: {error.strerror}") from None
        self._check_header()

    def _fail(self, message: str):
        raise ExportFormatError(f"{self.path}: {message}")

    def _check_fixed_header(self, data: bytes, size: int):
        if not data:
            self._fail("the file is empty, not a .tern file; export a model with `tern export`")
        if data[:len(MAGIC)] != MAGIC[:len(data)]:
            self._fail(f"not a .tern file (it starts with {data[:8]!r}, a .tern file with "
                       f"{MAGIC!r}); export a model with `tern export`")
        if size < FIXED_HEADER.size:
            self._truncated(FIXED_HEADER.size, size)
        _, version, flags, header_length, file_length, reserved, _ = FIXED_HEADER.unpack(data)
        if version not in READABLE_VERSIONS:
            self._fail(f"format version {version}, but this tern ({tern_fpga.__version__}) reads "
                       f"version {', '.join(map(str, READABLE_VERSIONS))} only; re-export the "
                       f"model with this tern (`tern export`)")
        if size < FIXED_HEADER.size + header_length:
            self._truncated(max(file_length, FIXED_HEADER.size + header_length), size)
        self.format_version, self.file_length = version, file_length
        self._flags, self._reserved, self._header_length = flags, reserved, header_length

    def _truncated(self, expected: int, found: int):
        self._fail(f"truncated: expected {expected} bytes, found {found}; the file was cut "
                   f"short (an interrupted copy?): copy it again or re-export it")

    def _check_frame(self, data: bytes, size: int):
        """The header's CRC (``data``: the fixed and JSON headers), flags and length."""
        stored = int.from_bytes(data[28:32], "little")
        computed = zlib.crc32(data[FIXED_HEADER.size:], zlib.crc32(data[:28]))
        if stored != computed:
            self._fail(f"header CRC mismatch (stored 0x{stored:08x}, computed 0x{computed:08x}): "
                       f"the header is damaged; copy the file again or re-export it")
        if self._flags or self._reserved:
            self._fail(f"uses flags 0x{self._flags:04x} / reserved 0x{self._reserved:08x} that "
                       f"format version {self.format_version} leaves zero; it was written by "
                       f"another tern: re-export the model with this one")
        if size < self.file_length:
            self._truncated(self.file_length, size)
        if size > self.file_length:
            self._fail(f"{size - self.file_length} bytes after its end (expected "
                       f"{self.file_length} bytes, found {size}); something was "
                       f"appended: copy the file again or re-export it")

    def _check_header(self):
        end = FIXED_HEADER.size + self._header_length
        try:
            header = json.loads(self._data[FIXED_HEADER.size:end].decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            self._fail(f"the header is not valid UTF-8 JSON ({error}); re-export the model")
        except RecursionError:
            self._fail("the header nests JSON values too deeply to be an export's; re-export "
                       "the model")
        if (not isinstance(header, dict) or set(header) != set(_HEADER_KEYS)
                or not isinstance(header["model_config"], dict)
                or not isinstance(header["metadata"], dict)):
            self._fail(f"the header must be an object with exactly the keys {list(_HEADER_KEYS)}, "
                       f"model_config and metadata objects; re-export the model with this tern")
        self.header = header
        self.params = self._check_params(header["params"], header["params_hash"])
        self.sections = self._check_table(header["sections"], end)

    def _check_params(self, fields, stored_hash) -> AcceleratorParameters:
        if not isinstance(fields, dict):
            self._fail(f"its accelerator parameters are {type(fields).__name__}, not an object; "
                       f"re-export the model with this tern")
        try:
            params = AcceleratorParameters.from_dict(fields)
            params_hash = _hex_hash(params.hash)
        except (TypeError, ValueError, ArithmeticError) as error:
            self._fail(f"its accelerator parameters are not valid for this tern ({error}); "
                       f"re-export the model with this tern")
        if stored_hash != params_hash:
            shown = stored_hash[:40] if isinstance(stored_hash, str) else _shown(stored_hash)
            self._fail(f"parameters hash {shown} does not match the hash of its own "
                       f"parameters, {params_hash}: the header was edited or written "
                       f"by another tern; re-export with `tern export --preset {params.name}`")
        return params

    def _check_table(self, entries, data_start: int) -> dict:
        if not isinstance(entries, list):
            self._fail("its section table is not a list; re-export the model")
        sections = {}
        for entry in entries:
            try:
                section = Section(**entry)
                section = dataclasses.replace(section, shape=tuple(section.shape))
                ok = self._section_consistent(section, data_start) and section.name not in sections
            except TypeError:
                ok = False
            if not ok:
                self._fail(f"section table entry {_shown(entry)} is inconsistent; re-export the "
                           f"model")
            sections[section.name] = section
            data_start = section.offset + section.length
        for name in REQUIRED_SECTIONS:
            if name not in sections:
                self._fail(f"has no {name!r} section (it has {', '.join(sections) or 'none'}); "
                           f"it is not a complete export: re-export the model with `tern export`")
        packing = "base3" if sections["weights"].encoding == "base3" else "2bit"
        if self.header["metadata"].get("weight_packing") != packing:
            self._fail(f"metadata names weight packing "
                       f"{_shown(self.header['metadata'].get('weight_packing'))} but the weights are "
                       f"stored as {packing!r}; re-export the model")
        return sections

    def _section_consistent(self, section: Section, previous_end: int) -> bool:
        """Whether an entry is well-formed and lies after ``previous_end`` inside the file."""
        shape_ok = all(type(n) is int and n >= 0 for n in section.shape)
        if not (isinstance(section.name, str) and _SECTION_NAME.fullmatch(section.name)
                and isinstance(section.dtype, str) and section.dtype in DTYPES
                and shape_ok and section.encoding in _ENCODINGS):
            return False
        if section.encoding == "base3":
            expected = -(-4 * section.size // 5) if section.dtype == "uint8" else -1
        else:
            expected = section.size * DTYPES[section.dtype].itemsize
        return (section.length == expected and type(section.offset) is int
                and type(section.crc32) is int and 0 <= section.crc32 < 1 << 32
                and section.offset % ALIGNMENT == 0 and section.offset >= previous_end
                and section.offset + section.length <= self.file_length)

    def section_ok(self, name: str) -> bool:
        """Whether the stored bytes of section ``name`` match their CRC-32."""
        section = self.sections[name]
        return zlib.crc32(self._payload(section)) == section.crc32

    def _payload(self, section: Section) -> memoryview:
        return memoryview(self._data)[section.offset:section.offset + section.length]

    def array(self, name: str) -> np.ndarray:
        """The decoded array of section ``name`` (a view into the file's bytes when raw).

        Raises
        ------
        ExportFormatError
            If the section's bytes do not match their CRC-32.
        """
        section = self.sections[name]
        if not self.section_ok(name):
            self._fail(f"section {name!r} CRC mismatch (stored 0x{section.crc32:08x}): its "
                       f"bytes are damaged; copy the file again or re-export it")
        payload = np.frombuffer(self._payload(section), dtype=np.uint8)
        if section.encoding == "base3":
            try:
                return pack_2bit(unpack_base3(payload, 4 * section.size))
            except ValueError as error:
                self._fail(f"section {name!r} is not valid base-3 ({error}); re-export it")
        return payload.view(DTYPES[section.dtype]).reshape(section.shape)

    def check_params(self, expected: AcceleratorParameters):
        """Raise :class:`ExportFormatError` unless the file was made for ``expected``."""
        if expected == self.params:
            return
        ours, theirs = self.params.to_dict(), expected.to_dict()
        differences = ", ".join(f"{field} ({ours[field]!r} in the file, {theirs[field]!r} here)"
                                for field in ours if ours[field] != theirs[field])
        self._fail(f"was exported for accelerator parameters {self.params.name!r} (hash "
                   f"{_hex_hash(self.params.hash)}), not {expected.name!r} (hash "
                   f"{_hex_hash(expected.hash)}); they differ in {differences}; re-export with "
                   f"`tern export --preset {expected.name}`")

    def to_export(self) -> TernExport:
        """Every section decoded and checked, as a :class:`TernExport`."""
        sections = {name: self.array(name) for name in self.sections}
        return TernExport(self.header["model_config"], self.params, sections,
                          self.header["metadata"])


def read_export(path, expected_params: AcceleratorParameters | None = None) -> TernExport:
    """Read and check a ``.tern`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    expected_params : AcceleratorParameters, optional
        The accelerator the caller will run the export on (the bitstream's parameters); the
        file must have been compiled for exactly these.

    Returns
    -------
    TernExport
        With ``"weights"`` always in the 2-bit image form, whatever packing the file uses.

    Raises
    ------
    ExportFormatError
        If the file is not a ``.tern`` file, is truncated, damaged (header or section CRC), of
        an unknown format version, inconsistent, or made for other accelerator parameters.
    """
    export_file = ExportFile(path)
    if expected_params is not None:
        export_file.check_params(expected_params)
    return export_file.to_export()


def _compiled_problem(export: TernExport) -> str | None:
    """What makes ``export``'s compiled sections unusable by the golden model and the board,
    or None. Their dtypes, shapes and sizes only: what the program does with them is the golden
    model's to check as it runs."""
    params, sections = export.params, export.sections
    missing = [name for name in COMPILED_SECTIONS if name not in sections]
    if missing:
        return f"lacks the section(s) {missing}: it was not written by `tern export`"
    program, entry_points = sections["program"], sections["entry_points"]
    weights, embeddings = sections["weights"], sections["embeddings"]
    instructions = program.size // WORDS_PER_INSTRUCTION
    word_bytes = params.ternary_lanes // 4
    vocab = export.model_config.get("vocab_size")

    def integers(name: str, ndim: int = 1) -> bool:
        return sections[name].dtype.kind in "iu" and sections[name].ndim == ndim

    checks = [
        ("program", program.dtype == np.uint32 and program.ndim == 1
         and program.size % WORDS_PER_INSTRUCTION == 0
         and 0 < instructions <= params.program_words,
         f"1-D uint32 of whole {WORDS_PER_INSTRUCTION}-word instructions (at most "
         + f"{params.program_words})"),
        ("entry_points", integers("entry_points") and entry_points.size == 2
         and all(0 <= int(v) < instructions for v in entry_points),
         f"two instruction numbers below {instructions}"),
        ("weights", weights.dtype == np.uint8 and weights.ndim == 1
         and weights.size % word_bytes == 0
         and weights.size <= params.weight_memory_words * word_bytes,
         f"1-D uint8 of whole {word_bytes}-byte words (at most {params.weight_memory_words})"),
        ("vector_init", integers("vector_init")
         and sections["vector_init"].size <= params.vector_memory_words,
         f"1-D integers (at most {params.vector_memory_words})"),
        ("constants", sections["constants"].dtype == np.int64 and sections["constants"].ndim == 1,
         "1-D int64"),
        ("embeddings", integers("embeddings", 2) and embeddings.shape[0] == vocab
         and embeddings.size <= params.embedding_memory_words,
         f"a 2-D integer table (at most {params.embedding_memory_words} elements) with a row "
         + f"for each of the model's vocab_size {_shown(vocab)} tokens"),
    ]
    for name, ok, expected in checks:
        if not ok:
            array = sections[name]
            return (f"its {name!r} section ({array.dtype} of shape {list(array.shape)}) is not "
                    f"{expected}: the file is inconsistent although its CRCs match (edited, or "
                    f"written by another tern?); re-export it with `tern export`")
    return None


def check_compiled(export: TernExport, where) -> None:
    """Check the sections that ``tern export`` writes and the golden model and the host driver
    read, before they are used: a file read by :func:`read_export` is intact, but only this
    says that its contents fit together (``where`` names the file in the message).

    Raises
    ------
    ExportFormatError
        If a section is missing or of the wrong dtype, shape or size for the export's
        accelerator parameters and model (say which, and what it should be).
    """
    problem = _compiled_problem(export)
    if problem is not None:
        raise ExportFormatError(f"{where}: {problem}")
