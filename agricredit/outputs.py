"""Writing outputs safely: atomic files, sha256, the manifest.

A crash or a killed run never leaves a partial file under the final name: every
output is written to a temporary file in the same folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from agricredit.errors import OutputError
from agricredit.jsondata import json_bytes

__all__ = ["atomic_path", "sha256_file", "sha256_path", "output_kind", "check_output_file", "check_output_folder",
           "output_folder_entries", "staged_outputs", "write_geojson", "write_table", "write_xlsx", "CategorizedStyle",
           "qml_text", "write_qml", "write_plot_table", "write_plot_dates", "gc_paused", "gc_young_only",
           "in_child_process", "map_in_processes"]

#: Prefix of the folder in which a run stages its outputs before publishing them.
STAGING_PREFIX = ".agricredit-staging-"


@contextlib.contextmanager
def gc_paused(*, promote: bool = False) -> Iterator[None]:
    """Pause Python's cyclic garbage collector in the block (as it was before, after it).

    Building an output creates a great many small objects (rows, features,
    records) that live until the file is written, and each collection walks
    every object of the run, its GeoDataFrames and verdicts included: at county
    scale these walks cost more than the building. Reference counting still
    frees what the block drops; cycles wait for the collector's next run.

    With ``promote``, the objects are moved into the collector's oldest generation on leaving (:func:`gc.freeze`
    then :func:`gc.unfreeze`): the first collection after a long pause would otherwise walk every object made in
    it as young (1.5 s after the reduce of a 100,000-plot county), though they live on. A full collection still
    walks them, as it walks every object.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if promote:
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


#: The oldest generation's threshold in :func:`gc_young_only`: the largest C int, a count of young collections no
#: run reaches.
_NO_FULL_COLLECTION = 2**31 - 1


@contextlib.contextmanager
def gc_young_only() -> Iterator[None]:
    """Let Python's cyclic garbage collector walk only the young generations in the block (its thresholds as they
    were, after it).

    A full collection walks every object of the process; in a county run each took 0.3–0.6 s of the client (the
    plots' tables, facts and rows: nine of them, 3.4 s of CPU while its workers waited on it). The young
    generations are still collected, so cycles among new objects are freed as before; a cycle of objects that
    outlived two collections waits for the first full collection after the block (or the end of the process).
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], _NO_FULL_COLLECTION)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


@contextlib.contextmanager
def in_child_process(job: Callable[[], Any]) -> Iterator[Callable[[], Any]]:
    """Run ``job`` in a forked child process while the block runs; yield a function that waits for its result.

    The child shares the parent's data as it was at the fork (copy-on-write, nothing is pickled but the result),
    so a CPU-bound job (encoding JSON, say) runs on another core while the parent goes on. The waiting function
    returns the job's result (pickled back through a pipe) or raises the job's exception. Leaving the block
    without waiting, on an error, ends the child and waits for it. Where there is no ``os.fork`` (Windows) the
    job runs in this process when waited for. The job must not rely on other threads of this process (a forked
    child has only the thread that forked) and must leave its files in a state the parent can clean up
    (:func:`atomic_path`, :func:`staged_outputs`).
    """
    if not hasattr(os, "fork"):
        yield job
        return
    import pickle
    import signal

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the job, send back what came of it, leave without running the parent's cleanup
        code = 1
        try:
            os.close(read)
            try:
                outcome = (True, job())
            except BaseException as error:  # noqa: BLE001 - handed to the parent, which raises it
                outcome = (False, error)
            try:
                data = pickle.dumps(outcome)
            except Exception as error:  # an exception that cannot be pickled: its text
                data = pickle.dumps((False, OutputError(f"{type(outcome[1]).__name__}: {outcome[1]} ({error})")))
            with os.fdopen(write, "wb") as pipe:
                pipe.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    waited = False

    def result() -> Any:
        nonlocal waited
        with os.fdopen(read, "rb", closefd=False) as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        waited = True
        if not data:
            raise OutputError(f"a child process ended without a result (wait status {status})")
        ok, value = pickle.loads(data)
        if not ok:
            raise value
        return value

    try:
        yield result
    finally:
        os.close(read)
        if not waited:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def map_in_processes(job: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[job(item) for item in items]``, the first item in this process and each other in a forked child
    (:func:`in_child_process`) meanwhile: the results (pickled back) in the order of ``items``.

    The first error, in the order of ``items``, is raised; the children still running are then ended.
    """
    with contextlib.ExitStack() as children:
        waits = [children.enter_context(in_child_process(functools.partial(job, item))) for item in items[1:]]
        results = [job(items[0])] if items else []
        return results + [wait() for wait in waits]


class LoadedOnRead(Sequence):
    """A list made at its first read (``load()``), its length known before: what a run returns but its caller may
    never read (the verdicts the reduce's children pickle back, say) costs nothing unread. It compares, prints and
    pickles as that list."""

    def __init__(self, load: Callable[[], list[Any]], length: int) -> None:
        self._load: Callable[[], list[Any]] | None = load
        self._length = length
        self._items: list[Any] | None = None

    def _list(self) -> list[Any]:
        if self._items is None:
            assert self._load is not None
            self._items, self._load = self._load(), None
            if len(self._items) != self._length:
                raise ValueError(f"{len(self._items)} items loaded, {self._length} announced")
        return self._items

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        return self._list()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._list())

    def __eq__(self, other: object) -> bool:
        return self._list() == (other._list() if isinstance(other, LoadedOnRead) else other)

    __hash__ = None  # type: ignore[assignment]  # as a list

    def __repr__(self) -> str:
        return repr(self._list())

    def __reduce__(self) -> tuple[Any, ...]:
        return list, (self._list(),)


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` are one file: the same resolved path, or hard/symbolic links to one inode."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` (resolved, links followed) lies in ``folder`` or below it."""
    return path.resolve().is_relative_to(folder.resolve())


def check_output_file(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], *,
                      overwrite: bool) -> None:
    """Refuse an output file that is an input (through any link) or that exists without ``overwrite``.

    Call it before the first expensive step, so that a refused output costs nothing.

    Parameters
    ----------
    path
        The output file (``-`` is stdout and always allowed).
    inputs
        Every input file or folder of the command.
    overwrite
        Whether an existing output (never an input) may be replaced.

    Raises
    ------
    OutputError
        The output is an input, an existing file inside an input folder, a folder, or exists.
    """
    if str(path) == "-":
        return
    path = Path(path)
    for source in map(Path, inputs):
        if str(source) == "-":
            continue
        if _same_file(path, source):
            raise OutputError(f"is an input ({source}); outputs never replace inputs", path=path)
        if source.is_dir() and _inside(path, source) and path.exists():
            raise OutputError(f"is a file of the input folder {source}; outputs never replace inputs", path=path)
    if path.is_dir():
        raise OutputError("is a folder; give a file name", path=path)
    if path.exists() and not overwrite:
        raise OutputError("exists; pass --overwrite to replace it", path=path)


def check_output_folder(folder: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]],
                        names: Iterable[str], *, overwrite: bool) -> None:
    """Refuse an output folder that holds an input, foreign files, or an earlier run's outputs without ``overwrite``.

    Parameters
    ----------
    folder
        The output folder (created later if missing).
    inputs
        Every input file or folder of the run (tile paths included).
    names
        The file names this run writes into ``folder``.
    overwrite
        Whether an earlier run's outputs may be replaced and files we did not
        write may stay beside ours. Inputs are refused whatever ``overwrite`` says.

    Raises
    ------
    OutputError
        Naming the folder and what is in the way.
    """
    folder = Path(folder)
    names = list(names)
    if folder.exists() and not folder.is_dir():
        raise OutputError("exists and is not a folder", path=folder)
    for source in map(Path, inputs):
        if str(source) == "-":
            continue
        if _inside(source, folder) or any(_same_file(folder / name, source) for name in names):
            raise OutputError(f"holds the input {source}; outputs never replace inputs: choose another folder",
                              path=folder)
    present = output_folder_entries(folder)
    foreign = [name for name in present if name not in names]
    if foreign and not overwrite:
        shown = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
        raise OutputError(f"holds files agricredit did not write ({shown}); choose an empty folder or pass --overwrite",
                          path=folder)
    if len(foreign) < len(present) and not overwrite:
        raise OutputError("holds the outputs of an earlier run; pass --overwrite to replace them", path=folder)


def output_folder_entries(folder: str | os.PathLike[str]) -> list[str]:
    """The names in an output folder (none when it is missing), in name order, but an interrupted run's staging
    folders (removed by the next run)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(STAGING_PREFIX))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path
        The final output path. Its folder must exist or be creatable.

    Yields
    ------
    Path
        Where the caller writes. Removed if the block raises.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create folder: {error.strerror}", path=final.parent) from error
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part" + final.suffix, dir=final.parent)
    except OSError as error:
        raise OutputError(f"cannot write here: {error.strerror}", path=final) from error
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give the output the usual permissions.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


#: The files of an ESRI Shapefile beside its ``.shp``: the index, the attributes (the plots' IDs and borrowers), the
#: CRS and the attributes' encoding.
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


def sha256_path(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file; of a folder (a .SAFE product, a folder of plot files), over its files'
    relative names and hashes; of a Shapefile's ``.shp``, over the names and hashes of its parts
    (:data:`SHAPEFILE_PARTS`: the ``.dbf`` holds its attributes)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() != ".shp":
        return sha256_file(path)
    if path.is_file():
        folder = path.parent
        members = [p for p in folder.iterdir() if p.is_file() and p.stem == path.stem
                   and p.suffix.lower() in SHAPEFILE_PARTS]
    else:
        folder, members = path, [p for p in path.rglob("*") if p.is_file()]
    digest = hashlib.sha256()
    for member in sorted(members):
        digest.update(f"{member.relative_to(folder).as_posix()}\0{sha256_file(member)}\n".encode())
    return digest.hexdigest()


GEOJSON_SUFFIXES = {".geojson", ".json"}
#: RFC 8142 GeoJSON Text Sequences (:func:`write_geojson`), for layers too large for one FeatureCollection.
GEOJSON_SEQ_SUFFIX = ".geojsonl"
PARQUET_SUFFIXES = {".parquet", ".geoparquet"}
CSV_SUFFIXES = {".csv"}


def output_kind(path: Path) -> str:
    """``geojson``, ``parquet`` or ``csv`` from the extension; ``-`` is GeoJSON on stdout."""
    if str(path) == "-":
        return "geojson"
    suffix = path.suffix.lower()
    kinds = (("geojson", {*GEOJSON_SUFFIXES, GEOJSON_SEQ_SUFFIX}), ("parquet", PARQUET_SUFFIXES), ("csv", CSV_SUFFIXES))
    for kind, suffixes in kinds:
        if suffix in suffixes:
            return kind
    raise OutputError("unknown output type; use .geojson, .parquet or .csv", path=path)


def _plain(value: Any) -> Any:
    """JSON-ready value: NaN → null, numpy scalars → Python."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain_column(values: Any) -> list[Any]:
    """:func:`_plain` of each value of a column (a Series or array), whole numeric columns at once."""
    values = np.asarray(values)
    plain = values.tolist()
    if values.dtype.kind in "biu":
        return plain
    if values.dtype.kind == "f":
        for index in np.flatnonzero(~np.isfinite(values)).tolist():
            plain[index] = None
        return plain
    kinds = set(map(type, plain))
    if kinds <= _PLAIN_KINDS:
        return plain
    if kinds <= {float, *_PLAIN_KINDS}:
        return [None if type(value) is float and not math.isfinite(value) else value for value in plain]
    return [_plain(value) for value in plain]


#: Types of values :func:`_plain` returns as they are.
_PLAIN_KINDS = frozenset({str, int, bool, type(None)})


def _rfc7946_geometries(geometries: Any, decimals: int | None) -> list[dict[str, Any] | None]:
    """GeoJSON geometries of shapely geometries (None for a missing or empty one), as
    :func:`shapely.geometry.mapping` gives them: counter-clockwise shells (RFC 7946 §3.1.6), coordinates rounded to
    ``decimals``.

    Two-dimensional polygons and multipolygons, the plots' outlines, are built from one array of all their
    coordinates; other geometries one by one.
    """
    geometries = np.asarray(geometries, dtype=object)
    if decimals is not None:
        geometries = shapely.transform(geometries, lambda xy: np.round(xy, decimals))
    geometries = shapely.orient_polygons(geometries)
    found: list[dict[str, Any] | None] = [None] * len(geometries)
    present = ~(shapely.is_missing(geometries) | shapely.is_empty(geometries))
    kind = shapely.get_type_id(geometries)
    polygonal = present & np.isin(kind, (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON))
    polygonal &= ~shapely.has_z(geometries)
    parts, part_of = shapely.get_parts(geometries[polygonal], return_index=True)
    with_empty_parts = np.unique(part_of[shapely.is_empty(parts)])
    if len(with_empty_parts):  # one by one
        polygonal[np.flatnonzero(polygonal)[with_empty_parts]] = False
        parts, part_of = shapely.get_parts(geometries[polygonal], return_index=True)
    for index in np.flatnonzero(present & ~polygonal).tolist():
        found[index] = shapely.geometry.mapping(geometries[index])
    if not polygonal.any():
        return found
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    points, point_of = shapely.get_coordinates(rings, return_index=True)
    if not np.isfinite(points).all():
        raise OutputError("a plot outline has a coordinate that is not a finite number, which GeoJSON cannot hold")
    points = points.tolist()
    ring_ends = np.cumsum(np.bincount(point_of, minlength=len(rings))).tolist()
    ring_starts = [0, *ring_ends[:-1]]
    polygon_rings: list[list[Any]] = [[] for _ in range(len(parts))]
    for polygon, start, end in zip(ring_of.tolist(), ring_starts, ring_ends):
        polygon_rings[polygon].append(points[start:end])
    multi = (kind[polygonal] == shapely.GeometryType.MULTIPOLYGON).tolist()
    outlines: list[list[Any]] = [[] for _ in range(len(multi))]
    for geometry, coordinates in zip(part_of.tolist(), polygon_rings):
        outlines[geometry].append(coordinates)
    for index, is_multi, polygons in zip(np.flatnonzero(polygonal).tolist(), multi, outlines):
        found[index] = ({"type": "MultiPolygon", "coordinates": polygons} if is_multi
                        else {"type": "Polygon", "coordinates": polygons[0]})
    return found


def write_geojson(features: list[dict[str, Any]], path: Path, *, decimals: int | None = None) -> None:
    """Write ``[{"geometry": shapely geometry, "properties": {...}}, ...]`` as an RFC 7946 FeatureCollection.

    A ``.geojsonl`` path is written as an RFC 8142 GeoJSON Text Sequence instead
    (one feature per record: RS, the feature, LF).

    Geometries must be WGS84 longitude/latitude; no ``crs`` member is written.
    Shells are oriented counter-clockwise; ``decimals`` rounds coordinates
    (6 decimals ≈ 0.1 m). ``path`` ``-`` writes to stdout.
    """
    _write_features([f["geometry"] for f in features],
                    lambda start, stop: [_plain(f["properties"]) for f in features[start:stop]], path, decimals=decimals)


#: Features per batch of a GeoJSON layer (:func:`_write_features`): each batch's properties, geometries and JSON text
#: are made and written before the next, so the layer's Python objects and text never all sit in memory. At 100,000
#: plots, written whole, they took 90,000-120,000 fresh pages (0.6-1.5 s of the kernel's time zeroing them); in
#: batches, which reuse the memory freed by the one before, a few hundred at most (the same bytes).
FEATURE_BATCH = 4096


def _write_features(geometries: Any, properties: Callable[[int, int], list[dict[str, Any]]], path: Path, *,
                    decimals: int | None) -> None:
    """:func:`write_geojson` of the features ``zip(geometries, properties(0, len(geometries)))``, properties already
    JSON-ready; ``properties(start, stop)`` gives those of features ``start`` to ``stop``, taken
    :data:`FEATURE_BATCH` at a time."""
    geometries = np.asarray(geometries, dtype=object)

    def batches() -> Iterator[list[dict[str, Any]]]:
        for start in range(0, len(geometries), FEATURE_BATCH):
            stop = min(start + FEATURE_BATCH, len(geometries))
            yield [{"type": "Feature", "geometry": geometry, "properties": row} for geometry, row
                   in zip(_rfc7946_geometries(geometries[start:stop], decimals), properties(start, stop))]

    if str(path) != "-" and path.suffix.lower() == GEOJSON_SEQ_SUFFIX:
        # RFC 8142: each feature is RS, a JSON text, LF; a reader can stream it feature by feature.
        with atomic_path(path) as tmp, open(tmp, "wb") as stream:
            for batch in batches():
                stream.write(b"".join(b"\x1e" + json_bytes(feature) + b"\n" for feature in batch))
        return
    # The collection's text, {"type":"FeatureCollection","features":[...]}, with the features' text batch by batch.
    pieces = (json_bytes(batch)[1:-1] for batch in batches())  # (a batch's features without the brackets)
    if str(path) == "-":  # (all made before any is written: an error leaves nothing half written)
        sys.stdout.write(b"".join(_feature_collection_pieces(pieces)).decode("utf-8") + "\n")
        return
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        for piece in _feature_collection_pieces(pieces):
            stream.write(piece)


def _feature_collection_pieces(features: Iterable[bytes]) -> Iterator[bytes]:
    """The compact JSON text of a FeatureCollection in pieces, from the texts of its features joined by commas
    (``features``: each a run of one or more features)."""
    yield b'{"type":"FeatureCollection","features":['
    first = True
    for piece in features:
        if not first:
            yield b","
        yield piece
        first = False
    yield b"]}"


def write_table(table: pd.DataFrame, path: Path, *, json_columns: tuple[str, ...] = (), bom: bool = True,
                header: list[str] | None = None) -> None:
    """Write a flat table as CSV or (Geo)Parquet; nested columns become JSON text.

    Parameters
    ----------
    table
        The rows; a GeoDataFrame becomes GeoParquet (CSV leaves the geometry out).
    path
        ``.csv`` or ``.parquet``.
    json_columns
        Columns holding lists or mappings, written as JSON text.
    bom
        CSV only: start with a UTF-8 byte-order mark. Excel takes a CSV
        without one for the system code page (GBK on Chinese Windows) and
        garbles every Chinese character; with it, Excel and pandas read UTF-8.
    header
        CSV only: the column headers to write (default: the column names).
    """
    out = table.copy()
    for column in json_columns:
        out[column] = [json.dumps(_plain(v), ensure_ascii=False) for v in out[column]]
    kind = output_kind(path)
    with atomic_path(path) as tmp:
        if kind == "csv":
            from agricredit.privacy import escape_csv_frame

            flat = pd.DataFrame(out.drop(columns="geometry", errors="ignore"))
            escape_csv_frame(flat).to_csv(tmp, index=False, encoding="utf-8-sig" if bom else "utf-8",
                                          lineterminator="\n", header=header if header is not None else True)
        else:  # a GeoDataFrame becomes GeoParquet
            out.to_parquet(tmp, index=False)


#: The timestamp written into xlsx metadata and zip entries, so that the same rows give the same bytes.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def write_xlsx(table: pd.DataFrame, path: Path, *, header: list[str] | None = None, sheet: str = "Sheet1") -> None:
    """Write a flat table as an Excel workbook, byte-identical for the same rows.

    Text that a spreadsheet would run as a formula is escaped as in CSV; numbers
    stay numbers (integers as integers); ``None`` is an empty cell; the header
    row is frozen. openpyxl stamps the time of writing into the workbook's
    properties and zip entries: both are set to a fixed time here.

    openpyxl writes the workbook; the data rows are written as it would write
    them (:func:`_sheet_rows_xml`), unless a value needs its own conversion.
    """
    import datetime
    import io
    import re
    import zipfile

    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    from agricredit.privacy import escape_csv_frame

    flat = escape_csv_frame(pd.DataFrame(table.drop(columns="geometry", errors="ignore")))
    rows = list(zip(*(_plain_column(flat[column]) for column in flat.columns)))
    data_rows = _sheet_rows_xml(rows, first_row=2)
    book = Workbook(write_only=True)  # rows streamed to the file, not kept as cell objects
    book.properties.created = book.properties.modified = datetime.datetime(*_FIXED_TIME)
    book.properties.creator = "agricredit"
    worksheet = book.create_sheet(sheet)
    worksheet.freeze_panes = "A2"
    # A write-only sheet leaves out the sheet's size (<dimension>), which openpyxl writes when the sheet has it;
    # it is known here, so the workbook is the one a normal (in-memory) sheet gives.
    size = f"A1:{get_column_letter(len(flat.columns))}{len(flat) + 1}" if len(flat.columns) else "A1:A1"
    worksheet.calculate_dimension = lambda: size
    worksheet.append(header if header is not None else list(flat.columns))
    for row in rows if data_rows is None else ():
        worksheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    with atomic_path(path) as tmp, zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, \
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            data = source.read(info)
            if info.filename == "docProps/core.xml":  # openpyxl sets `modified` to the time of saving
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>1980-01-01T00:00:00Z", data)
            if info.filename == "xl/worksheets/sheet1.xml" and data_rows and b"</sheetData>" in data:
                # (streamed into the entry: the same bytes as writestr of the whole, without a copy of it)
                head, tail = data.split(b"</sheetData>", 1)
                with target.open(fixed, "w") as entry:
                    for piece in (head, *data_rows, b"</sheetData>", tail):
                        entry.write(piece)
                continue
            target.writestr(fixed, data)


#: Control characters: openpyxl refuses most of them in a cell, and text with one is left to it.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f]")


def _plain_cell_text(value: str, error_codes: Collection[str]) -> bool:
    """True when openpyxl writes ``value`` as it is in an inline-string cell: no control character, no space at
    either end (openpyxl marks those), not a formula (``=...``) nor one of openpyxl's ``error_codes``, within a
    cell's 32,767 characters."""
    return (len(value) <= 32767 and value == value.strip() and not (len(value) > 1 and value[0] == "=")
            and value not in error_codes and not _CONTROL_CHARACTERS.search(value))


#: Rows per piece of :func:`_sheet_rows_xml`'s text.
XLSX_ROWS_PER_PIECE = 1024


def _sheet_rows_xml(rows: list[tuple[Any, ...]], *, first_row: int) -> list[bytes] | None:
    """The ``<row>`` elements openpyxl writes for ``rows`` of ``None``, ``int``, finite ``float`` and plain text,
    as UTF-8 text in pieces of :data:`XLSX_ROWS_PER_PIECE` rows (no empty piece): only one piece's elements are
    Python strings at a time, and the sheet's text is never joined whole (36,630 borrowers' workbook: 12,000 fresh
    pages instead of 114,000).

    ``None`` when a value is of another kind, or text openpyxl converts or
    refuses (:func:`_plain_cell_text`): openpyxl must write the rows itself.
    """
    from xml.sax.saxutils import escape

    from openpyxl.cell.cell import ERROR_CODES
    from openpyxl.utils import get_column_letter

    letters = [get_column_letter(i) for i in range(1, max(map(len, rows), default=0) + 1)]
    pieces: list[bytes] = []
    parts: list[str] = []
    for number, row in enumerate(rows, start=first_row):
        parts.append(f'<row r="{number}">')
        for letter, value in zip(letters, row):
            kind = type(value)
            if value is None:
                continue
            if kind is str:
                if not value:
                    parts.append(f'<c r="{letter}{number}" t="inlineStr" />')
                    continue
                if not _plain_cell_text(value, ERROR_CODES):
                    return None
                parts.append(f'<c r="{letter}{number}" t="inlineStr"><is><t>{escape(value)}</t></is></c>')
            elif kind is int or (kind is float and math.isfinite(value)):
                parts.append(f'<c r="{letter}{number}" t="n"><v>{"%.16g" % value}</v></c>')
            else:
                return None
        parts.append("</row>")
        if (number + 1 - first_row) % XLSX_ROWS_PER_PIECE == 0:
            pieces.append("".join(parts).encode("utf-8"))
            parts.clear()
    if parts:
        pieces.append("".join(parts).encode("utf-8"))
    return pieces


@dataclass(frozen=True)
class CategorizedStyle:
    """A QGIS categorized fill style: one ``(value, label, "r,g,b")`` category per value of ``field``."""

    field: str
    categories: tuple[tuple[str, str, str], ...]


#: What QGIS writes around one option of a symbol or symbol layer (an empty data-defined property collection).
_EMPTY_DATA_DEFINED = (
    '<data_defined_properties><Option type="Map"><Option type="QString" name="name" value=""/>'
    '<Option name="properties"/><Option type="QString" name="type" value="collection"/></Option>'
    "</data_defined_properties>"
)


def qml_text(style: CategorizedStyle) -> str:
    """The QGIS style (``.qml``, QGIS 3.28 symbology) of a polygon layer categorized by ``style.field``.

    The structure follows a symbology-only style file saved by QGIS 3.28:
    ``renderer-v2`` of type ``categorizedSymbol`` with its categories, one
    ``SimpleFill`` symbol per category, ``layerGeometryType`` 2 (polygon).
    """
    from xml.sax.saxutils import quoteattr

    categories, symbols = [], []
    for index, (value, label, rgb) in enumerate(style.categories):
        categories.append(f'<category type="string" render="true" value={quoteattr(value)} symbol="{index}" '
                          f"label={quoteattr(label)}/>")
        options = {
            "border_width_map_unit_scale": "3x:0,0,0,0,0,0", "color": f"{rgb},200", "joinstyle": "bevel",
            "offset": "0,0", "offset_map_unit_scale": "3x:0,0,0,0,0,0", "offset_unit": "MM",
            "outline_color": "35,35,35,255", "outline_style": "solid", "outline_width": "0.26",
            "outline_width_unit": "MM", "style": "solid",
        }
        option_xml = "".join(f'<Option type="QString" name="{k}" value="{v}"/>' for k, v in options.items())
        symbols.append(
            f'<symbol clip_to_extent="1" type="fill" frame_rate="10" is_animated="0" name="{index}" alpha="1" '
            f'force_rhr="0">{_EMPTY_DATA_DEFINED}<layer locked="0" pass="0" class="SimpleFill" enabled="1">'
            f'<Option type="Map">{option_xml}</Option>{_EMPTY_DATA_DEFINED}</layer></symbol>'
        )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28.0-Firenze" styleCategories="Symbology">\n'
        f'<renderer-v2 forceraster="0" referencescale="-1" type="categorizedSymbol" symbollevels="0" '
        f'enableorderby="0" attr={quoteattr(style.field)}>\n'
        f'<categories>\n{chr(10).join(categories)}\n</categories>\n<symbols>\n{chr(10).join(symbols)}\n</symbols>\n'
        "<rotation/><sizescale/>\n</renderer-v2>\n"
        "<blendMode>0</blendMode><featureBlendMode>0</featureBlendMode><layerGeometryType>2</layerGeometryType>\n"
        "</qgis>\n"
    )


def write_qml(path: Path, style: CategorizedStyle) -> None:
    """Write :func:`qml_text` to ``path`` (QGIS applies ``NAME.qml`` to ``NAME.geojson`` when it opens the layer)."""
    with atomic_path(path) as tmp:
        tmp.write_text(qml_text(style), encoding="utf-8")


def _listed_outputs(manifest: Path) -> set[str]:
    """The output names an earlier agricredit run's manifest lists (none if missing, unreadable or another tool's)."""
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
        listed = document.get("outputs", {}) if document.get("tool") == "agricredit" else {}
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in listed if isinstance(name, str) and "/" not in name and name not in ("", ".", "..")}


@contextlib.contextmanager
def staged_outputs(folder: str | os.PathLike[str], *, last: str = "manifest.json",
                   check: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a staging folder inside ``folder``; on success publish its files into ``folder``, ``last`` last.

    ``check`` is called with the staging folder once the block is done and
    before anything is published (e.g. the personal-data scan,
    :meth:`agricredit.privacy.PersonalDataGuard.check_folder`); an exception
    from it publishes nothing. An exception or Ctrl-C inside the block (or while publishing) leaves no
    new output behind: the staging folder is removed, and so is every file
    already moved, and the folder itself if this call created it. Publishing removes the earlier manifest first (a manifest
    vouches for a complete folder) and, after the new files are in place, the
    outputs the earlier manifest listed that this run did not write again.
    """
    import shutil

    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    except OSError as error:
        raise OutputError(f"cannot write here: {error.strerror}", path=folder) from error
    published: list[Path] = []
    try:
        yield stage
        if check is not None:
            check(stage)
        names = sorted((p.name for p in stage.iterdir()), key=lambda name: (name == last, name))
        stale = _listed_outputs(folder / last) - set(names)
        (folder / last).unlink(missing_ok=True)
        for name in names:
            os.replace(stage / name, folder / name)
            published.append(folder / name)
        for name in sorted(stale):
            (folder / name).unlink(missing_ok=True)
    except BaseException:
        for path in published:
            path.unlink(missing_ok=True)
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # the folder this run made, if nothing else was put there meanwhile
        raise
    shutil.rmtree(stage, ignore_errors=True)


def write_plot_table(plots: Any, path: Path, *, decimals: int | None = 6, bom: bool = True) -> None:
    """Write a GeoDataFrame of plots (WGS84) by extension: GeoJSON features, GeoParquet or CSV.

    Nested values (lists, mappings) are JSON text in every format, so that
    GeoJSON properties stay flat (QGIS can style them; a Shapefile export
    keeps them). CSV leaves the geometry out; ``bom`` starts it with a
    UTF-8 byte-order mark (:func:`write_table`). ``decimals`` rounds GeoJSON
    coordinates (``None``: as they are).
    """
    columns = [c for c in plots.columns if c != "geometry"]
    nested = tuple(c for c in columns
                   if any(issubclass(kind, (list, dict)) for kind in set(map(type, plots[c].to_numpy()))))
    if output_kind(path) != "geojson":
        write_table(plots, path, json_columns=nested, bom=bom)
        return
    arrays = [plots[c].to_numpy() for c in columns]

    def rows(start: int, stop: int) -> list[dict[str, Any]]:
        values = [[json.dumps(_plain(v), ensure_ascii=False) for v in array[start:stop]] if c in nested
                  else _plain_column(array[start:stop]) for c, array in zip(columns, arrays)]
        return [dict(zip(columns, row)) for row in zip(*values)] if columns else [{} for _ in range(start, stop)]

    _write_features(plots.geometry.to_numpy(), rows, path, decimals=decimals)


def write_plot_dates(table: pd.DataFrame, plots: Any, path: Path, *, decimals: int | None = None,
                     bom: bool = True) -> None:
    """Write a per plot per date table with the fields of :data:`agricredit.schema.STATS_FIELDS`.

    CSV and Parquet are the long table; GeoJSON has one flat feature per plot
    and date (QGIS can filter or animate it by ``date``).

    Parameters
    ----------
    table
        Long table with ``plot_id`` (one row per plot and date).
    plots
        GeoDataFrame of the plots (``plot_id``, any CRS) for the GeoJSON geometry.
    path
        ``.csv``, ``.parquet`` or ``.geojson`` (``-``: GeoJSON on stdout).
    decimals
        GeoJSON only: rounds coordinates (``None``: as they are).
    bom
        CSV only: start with a UTF-8 byte-order mark (:func:`write_table`).
    """
    from agricredit.schema import STATS_FIELDS, conform, conformed_table

    if output_kind(path) != "geojson":
        write_table(conformed_table(table.to_dict("records"), STATS_FIELDS), path, bom=bom)
        return
    rows = conform(table.to_dict("records"), STATS_FIELDS)
    from agricredit.plots import to_wgs84

    wgs = to_wgs84(plots)
    geometry_of = dict(zip(wgs["plot_id"], wgs.geometry.values))
    write_geojson([{"geometry": geometry_of.get(row["plot_id"]), "properties": row} for row in rows], path,
                  decimals=decimals)
