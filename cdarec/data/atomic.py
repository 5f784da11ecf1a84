"""Shared: one reader for RecBole atomic files (``.inter``, ``.item``, ``.user``, ...).

Why our own reader: RecBole itself pulls in torch and pandas, and the files are simple
enough (tab-separated, one ``name:type`` header line) that plain string splitting reads
ML-1M's million lines in well under a second. Every data set cdarec loads goes through
``read_atomic``, so quirks of real files are handled once, here: CRLF line endings (the
ML-1M files have them), a UTF-8 byte-order mark, Latin-1 text (the raw MovieLens dumps),
blank trailing lines. Anything else malformed raises ``DataError`` naming the file and
the line, because a silently misaligned column poisons everything downstream.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

FieldType = Literal["token", "token_seq", "float", "float_seq"]
FIELD_TYPES: tuple[str, ...] = get_args(FieldType)


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class AtomicField:
    """One column declared in the header, e.g. ``item_id:token``."""

    name: str
    type: FieldType

    def __str__(self) -> str:
        return f"{self.name}:{self.type}"


@dataclass
class AtomicTable:
    """The parsed file: declared fields plus one list of values per (selected) column.

    Values by type: ``token`` -> ``str``; ``token_seq`` -> ``list[str]``; ``float`` ->
    ``float`` or ``None`` when empty; ``float_seq`` -> ``list[float]``.
    """

    path: Path
    fields: tuple[AtomicField, ...]
    columns: dict[str, list[Any]] = field(repr=False)
    n_rows: int = 0

    def __len__(self) -> int:
        return self.n_rows

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> list[Any]:
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(
                f"{self.path}: no column '{name}' (has: {', '.join(self.columns)})"
            ) from None

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def get_field(self, name: str) -> AtomicField | None:
        return next((f for f in self.fields if f.name == name), None)

    def first(self, *names: str) -> AtomicField | None:
        """The first of ``names`` that is a loaded column: files name the same thing
        differently (``movie_title`` / ``title``, ``genre`` / ``class``)."""
        return next((f for n in names if n in self.columns and (f := self.get_field(n))), None)


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # The original MovieLens dumps are Latin-1; every byte decodes, so no error here.
        return raw.decode("latin-1")


def parse_header(line: str, path: Path | str = "<header>") -> tuple[AtomicField, ...]:
    """Parse ``name:type<TAB>name:type...``; a clear error beats a misread column."""
    line = line.lstrip("\ufeff").rstrip("\r\n")
    if not line.strip():
        raise DataError(f"{path}: line 1: empty header (expected 'name:type' fields)")
    fields: list[AtomicField] = []
    for i, raw in enumerate(line.split("\t"), start=1):
        name, sep, typ = raw.strip().rpartition(":")
        if not sep or not name:
            raise DataError(
                f"{path}: line 1: bad header field {i} {raw!r}: expected 'name:type' "
                f"with type one of {', '.join(FIELD_TYPES)}"
            )
        if typ not in FIELD_TYPES:
            raise DataError(
                f"{path}: line 1: bad header field {i} {raw!r}: unknown type '{typ}' "
                f"(expected one of {', '.join(FIELD_TYPES)})"
            )
        if any(f.name == name for f in fields):
            raise DataError(f"{path}: line 1: duplicate column '{name}' in the header")
        fields.append(AtomicField(name, typ))  # type: ignore[arg-type]
    return tuple(fields)


def read_header(path: str | Path) -> tuple[AtomicField, ...]:
    """Only the header, for callers that decide what to load from the declared fields."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8-sig", errors="replace") as fh:
            first = fh.readline()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    return parse_header(first, path)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of small objects.

    Why: each of ML-1M's million split lines is a new container, so the collector would
    run thousands of times over an ever larger heap, which alone makes parsing ~5x
    slower. None of these objects form cycles, so pausing it is safe.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _to_float(values: list[str], path: Path, lineno: Any, name: str) -> list[float | None]:
    try:
        # Fast path: one comprehension; only on failure do we look for the culprit.
        return [float(v) if v else None for v in values]
    except ValueError:
        pass
    for i, v in enumerate(values):
        try:
            if v:
                float(v)
        except ValueError:
            raise DataError(
                f"{path}: line {lineno(i)}: column '{name}': cannot parse {v!r} as a float"
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _to_float_seq(values: list[str], path: Path, lineno: Any, name: str) -> list[list[float]]:
    out: list[list[float]] = []
    for i, v in enumerate(values):
        try:
            out.append([float(x) for x in v.split()])
        except ValueError:
            raise DataError(
                f"{path}: line {lineno(i)}: column '{name}': cannot parse {v!r} as floats"
            ) from None
    return out


def read_atomic(path: str | Path, columns: Iterable[str] | None = None) -> AtomicTable:
    """Read one atomic file into typed columns.

    ``columns`` restricts which columns are converted and kept (all are still counted,
    so a short line is an error either way); loading only ``user_id`` of a ``.user``
    file should not fail on a malformed ``age`` nobody reads. Unknown names in
    ``columns`` are ignored, which lets callers ask for optional columns.
    """
    path = Path(path)
    with gc_paused():
        return _read_atomic(path, columns)


def _read_atomic(path: Path, columns: Iterable[str] | None) -> AtomicTable:
    text = _decode(path)
    # Universal newlines by hand: CRLF (ML-1M) and lone CR both become LF.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    fields = parse_header(lines[0], path)
    body = lines[1:]

    # Skip blank lines (a trailing newline yields one) but keep true line numbers.
    line_numbers: list[int] | None = None
    if any(not ln for ln in body):
        line_numbers = [i for i, ln in enumerate(body, start=2) if ln]
        body = [ln for ln in body if ln]

    def lineno(i: int) -> int:
        return line_numbers[i] if line_numbers is not None else i + 2

    n = len(fields)
    rows = [ln.split("\t") for ln in body]
    bad = next((i for i, r in enumerate(rows) if len(r) != n), None)
    if bad is not None:
        raise DataError(
            f"{path}: line {lineno(bad)}: expected {n} tab-separated columns "
            f"({', '.join(map(str, fields))}), found {len(rows[bad])}"
        )

    wanted = None if columns is None else set(columns)
    out: dict[str, list[Any]] = {}
    transposed = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    del rows
    for f, raw_col in zip(fields, transposed, strict=True):
        if wanted is not None and f.name not in wanted:
            continue
        col = list(raw_col)
        if f.type == "token":
            out[f.name] = col
        elif f.type == "token_seq":
            out[f.name] = [v.split() for v in col]
        elif f.type == "float":
            out[f.name] = _to_float(col, path, lineno, f.name)
        else:
            out[f.name] = _to_float_seq(col, path, lineno, f.name)
    return AtomicTable(path=path, fields=fields, columns=out, n_rows=len(body))
