"""Hugging Face datasets in and out of embedding stores: `namesae embed --dataset` and `namesae export`.

In: a local image dataset, either a folder written by `datasets.Dataset.save_to_disk` (read with
`datasets.load_from_disk`) or an imagefolder (images, optionally with `metadata.csv`/`metadata.jsonl` naming
`file_name` and further columns; read with `datasets.load_dataset("imagefolder", data_dir=DIR)`, offline).
Its rows become `ImageRow`s for `namesae.embed.embed_images`: an image column, a name column (a `ClassLabel`
column such as an imagefolder's `label`, the class folder's name, gives its label names), optional prompt and
seed columns. An image held as a file path is embedded from that file; one held as bytes is written once, as
PNG, into the store's `<store>.images/` folder under a name hashed from its bytes, name, prompt and seed, so a
rerun finds the same file and the store's resume (by image path) skips it.

Out: `export_store` writes a store as a Hugging Face Dataset folder (`save_to_disk`) or one parquet file, one
row per store row with columns name, prompt, kind, seed (int64), image (the image file's absolute path, '' for
rows without one; null throughout when the store has no image column) and embedding (float32 list of length
dim). The store's space, dim, normalized, on-disk dtype, optional fields and attributes travel as JSON: in the
dataset info's `description` (hf) or the parquet schema metadata key `namesae`. `store_from_hf` rebuilds the
store from either, bit-identical (image paths made relative to the new store's folder again).

`datasets` and `pyarrow` are imported only inside these functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from namesae.embed import ImageRow
from namesae.errors import NamesaeError, StoreError
from namesae.io import atomic_dir, atomic_file, atomic_write_bytes, json_ready
from namesae.names import clean_name
from namesae.store import COMMITTED, DIGESTS, STORE_ID, EmbeddingStore, write_store

EXPORT_FORMAT = "namesae-store-export"
EXPORT_VERSION = 1
FORMATS = ("hf", "parquet")
META_KEY = b"namesae"
BATCH_ROWS = 4096
COLUMN_OPTIONS = {"image": "--image-column", "name": "--name-column", "prompt": "--prompt-column",
                  "seed": "--seed-column"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_MODES = ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA")
_OWN_ATTRS = ("format_version", "space", "dim", "normalized", COMMITTED, STORE_ID, DIGESTS)


@dataclass(frozen=True)
class ExportResult:
    """What `export_store` wrote."""

    path: Path
    format: str  # "hf" or "parquet"
    rows: int
    space: str


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise NamesaeError("reading and writing Hugging Face datasets needs the datasets package: "
                           "pip install 'datasets>=2.14,<6'") from None
    return datasets


@contextlib.contextmanager
def _quiet(datasets: Any) -> Iterator[None]:
    """No datasets progress bars inside the block (namesae shows its own); the old setting is restored."""
    utils = datasets.utils
    if not hasattr(utils, "are_progress_bars_disabled"):  # older datasets: leave its bars alone
        yield
        return
    was_disabled = utils.are_progress_bars_disabled()
    utils.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            utils.enable_progress_bars()


def dataset_images_dir(store: str | Path) -> Path:
    """The folder beside a store that holds the PNGs of dataset images given as bytes: `<store>.images/`."""
    store = Path(store)
    return store.with_name(f"{store.name}.images")


def _single(dataset: Any, datasets: Any, where: str | Path, split: str | None) -> Any:
    """One Dataset from a Dataset or DatasetDict: the named split, else all splits in order."""
    if not isinstance(dataset, datasets.DatasetDict):
        return dataset
    if split is not None:
        if split not in dataset:
            raise NamesaeError(f"{where}: no split {split!r} (splits: {', '.join(dataset)})")
        return dataset[split]
    parts = list(dataset.values())
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


@contextlib.contextmanager
def open_image_dataset(folder: str | Path, split: str | None = None) -> Iterator[Any]:
    """The local image dataset at `folder` (save_to_disk folder or imagefolder) as one `datasets.Dataset`,
    open for the block (an imagefolder is indexed in a temporary cache, removed afterwards)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NamesaeError(f"{folder}: dataset folder not found")
    datasets = _datasets()
    saved = any((folder / f).is_file() for f in ("state.json", "dataset_dict.json"))
    with tempfile.TemporaryDirectory(prefix="namesae-hf-") as cache, _quiet(datasets):
        try:
            if saved:
                loaded = datasets.load_from_disk(str(folder))
            else:
                loaded = datasets.load_dataset("imagefolder", data_dir=str(folder), cache_dir=cache)
        except Exception as err:  # noqa: BLE001 -- datasets raises many error types
            kind = "a Dataset.save_to_disk folder" if saved else "an imagefolder"
            raise NamesaeError(f"{folder}: not a readable Hugging Face dataset (read as {kind}: "
                               f"{_one_line(err)}); give a save_to_disk folder or a folder of images "
                               f"with an optional metadata.csv") from None
        yield _single(loaded, datasets, folder, split)


def _column(features: Any, role: str, wanted: str, folder: Path) -> str:
    if wanted in features:
        return wanted
    columns = ", ".join(features) or "none"
    raise NamesaeError(f"{folder}: no column {wanted!r} for the {role} (columns: {columns}); pass "
                       f"{COLUMN_OPTIONS[role]} COLUMN")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _seed(value: Any, where: str) -> int:
    """A seed cell as an int, -1 where empty (a CSV column with gaps arrives as floats with NaN)."""
    if _missing(value) or value == "":
        return -1
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not number.is_integer():
        raise NamesaeError(f"{where}: seed {value!r} is not an integer")
    return int(number)


def _png_bytes(data: bytes, where: str) -> bytes:
    if data.startswith(PNG_MAGIC):
        return data
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im if im.mode in PNG_MODES else im.convert("RGB")
            buf = io.BytesIO()
            im.save(buf, "PNG")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise NamesaeError(f"{where}: image bytes are not a readable image ({_one_line(err)})") from None
    return buf.getvalue()


def _image_file(value: Any, folder: Path, images_dir: Path, key: str, where: str) -> Path:
    """The file an image cell names, or the PNG its bytes are written to (once; named by bytes and key)."""
    data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (None, value)
    if data:
        digest = hashlib.sha256(bytes(data))
        digest.update(key.encode("utf-8"))
        target = images_dir / f"{digest.hexdigest()[:24]}.png"
        if not target.is_file():
            atomic_write_bytes(target, _png_bytes(bytes(data), where))
        return target.resolve()
    if isinstance(path, str) and path:
        file = Path(path) if Path(path).is_absolute() else folder / path
        if not file.is_file():
            raise NamesaeError(f"{where}: image file {file} not found")
        return file.resolve()
    raise NamesaeError(f"{where}: no image (expected image bytes or a file path, got {type(value).__name__})")


def dataset_rows(folder: str | Path, images_dir: str | Path, image_column: str = "image",
                 name_column: str = "name", prompt_column: str | None = None, seed_column: str | None = None,
                 split: str | None = None) -> list[ImageRow]:
    """The rows of a local image dataset as image rows to embed; images given as bytes become PNGs in
    `images_dir` (see the module docstring). Without a `name_column` column, an imagefolder's class labels
    name the images."""
    folder, images_dir = Path(folder), Path(images_dir)
    rows: list[ImageRow] = []
    with open_image_dataset(folder, split) as ds:
        datasets = _datasets()
        features = ds.features
        if name_column not in features and name_column == "name" and \
                isinstance(features.get("label"), datasets.ClassLabel):
            name_column = "label"
        columns = {"image": _column(features, "image", image_column, folder),
                   "name": _column(features, "name", name_column, folder)}
        if prompt_column is not None:
            columns["prompt"] = _column(features, "prompt", prompt_column, folder)
        if seed_column is not None:
            columns["seed"] = _column(features, "seed", seed_column, folder)
        name_feature = features[columns["name"]]
        labels = name_feature.names if isinstance(name_feature, datasets.ClassLabel) else None
        if not len(ds):
            raise NamesaeError(f"{folder}: the dataset has no rows")
        arrow = ds.select_columns(list(dict.fromkeys(columns.values()))).with_format("arrow")
        for start in range(0, len(ds), BATCH_ROWS):
            table = arrow[start:start + BATCH_ROWS]
            cells = {role: table.column(col).to_pylist() for role, col in columns.items()}
            for i in range(table.num_rows):
                where = f"{folder}: row {start + i}"
                raw = cells["name"][i]
                if labels is not None:
                    if not isinstance(raw, int) or not 0 <= raw < len(labels):
                        raise NamesaeError(f"{where}: label {raw!r} names no class of column "
                                           f"{columns['name']!r}")
                    raw = labels[raw]
                if not isinstance(raw, str):
                    raise NamesaeError(f"{where}: column {columns['name']!r} holds {type(raw).__name__}, "
                                       f"expected a name; pass {COLUMN_OPTIONS['name']} COLUMN")
                name = clean_name(raw, f"{where} column {columns['name']!r}")
                prompt = cells["prompt"][i] if "prompt" in cells else None
                prompt = "" if _missing(prompt) else str(prompt)
                seed = _seed(cells["seed"][i], where) if "seed" in cells else -1
                key = f"\0{name}\0{prompt}\0{seed}"
                path = _image_file(cells["image"][i], folder, images_dir, key, where)
                rows.append(ImageRow(path, name, prompt, seed))
    return rows


# ---- export ------------------------------------------------------------------------------------------------
def _export_meta(store: EmbeddingStore) -> dict[str, Any]:
    fields = ["seed"] if store.images is None else ["seed", "image"]
    attrs = {k: v for k, v in json_ready(store.attrs).items() if k not in _OWN_ATTRS and v is not None}
    return {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "space": store.space, "dim": store.dim,
            "normalized": store.normalized, "dtype": store.dtype, "chunk_rows": store.chunk_rows,
            "rows": len(store), "fields": fields, "attrs": attrs}


def _batches(store: EmbeddingStore, schema: Any, rows_per_batch: int) -> Iterator[Any]:
    import pyarrow as pa

    base = store.path.resolve().parent
    images = store.images
    for start, x in store.iter_chunks(rows_per_batch):
        stop = start + len(x)
        image = [None] * len(x) if images is None else \
            [os.path.normpath(base / p) if p else "" for p in images[start:stop]]
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), type=pa.float32()), store.dim)
        yield pa.record_batch([
            pa.array(store.names[start:stop].tolist(), pa.string()),
            pa.array(store.prompts[start:stop].tolist(), pa.string()),
            pa.array(store.kinds[start:stop].tolist(), pa.string()),
            pa.array(store.seeds[start:stop], pa.int64()),
            pa.array(image, pa.string()),
            embedding], schema=schema)


def export_store(store: str | Path, out: str | Path, format: str = "hf",
                 rows_per_batch: int = 16384) -> ExportResult:
    """Write the store at `store` as a Hugging Face Dataset folder (format "hf") or a parquet file
    ("parquet"), atomically; `store_from_hf` reads it back losslessly."""
    if format not in FORMATS:
        raise NamesaeError(f"export format {format!r} is unknown; use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.resolve() == Path(store).resolve():
        raise NamesaeError(f"{out}: is the store being exported; choose another --out")
    if format == "parquet" and out.is_dir():
        raise NamesaeError(f"{out}: is a folder; --format parquet writes one file: give --out FILE.parquet")
    import pyarrow as pa

    with EmbeddingStore.open(store) as opened:
        meta = _export_meta(opened)
        schema = pa.schema([("name", pa.string()), ("prompt", pa.string()), ("kind", pa.string()),
                            ("seed", pa.int64()), ("image", pa.string()),
                            ("embedding", pa.list_(pa.float32(), opened.dim))])
        if format == "parquet":
            import pyarrow.parquet as pq

            schema = schema.with_metadata({META_KEY: json.dumps(meta)})
            with atomic_file(out) as tmp, pq.ParquetWriter(str(tmp), schema) as writer:
                for batch in _batches(opened, schema, rows_per_batch):
                    writer.write_batch(batch)
        else:
            datasets = _datasets()
            table = pa.Table.from_batches(list(_batches(opened, schema, rows_per_batch)), schema=schema)
            dataset = datasets.Dataset(table, info=datasets.DatasetInfo(description=json.dumps(meta)))
            with atomic_dir(out) as tmp, _quiet(datasets):
                dataset.save_to_disk(str(tmp))
        return ExportResult(out, format, len(opened), opened.space)


# ---- import ------------------------------------------------------------------------------------------------
def _check_meta(meta: Any, where: str) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise StoreError(f"{where}: not a namesae store export (no {EXPORT_FORMAT} metadata); pass the "
                         f"folder or parquet file `namesae export` wrote")
    if meta.get("format_version") != EXPORT_VERSION:
        raise StoreError(f"{where}: export format_version {meta.get('format_version')!r} is not supported "
                         f"(this namesae reads {EXPORT_VERSION}); upgrade namesae")
    if not isinstance(meta.get("space"), str) or not isinstance(meta.get("dim"), int) or \
            not isinstance(meta.get("normalized"), bool):
        raise StoreError(f"{where}: export metadata lacks space, dim or normalized; re-export the store")
    return meta


def _meta_from_description(dataset: Any, where: str) -> dict[str, Any]:
    try:
        meta = json.loads(dataset.info.description or "")
    except (json.JSONDecodeError, TypeError, AttributeError):
        meta = None
    return _check_meta(meta, where)


def _tables(source: Any) -> tuple[dict[str, Any], Iterator[Any], str]:
    """(metadata, pyarrow tables of the rows in order, a label for errors) of an export path or a Dataset."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_file():
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                parquet = pq.ParquetFile(str(path))
                raw = (parquet.schema_arrow.metadata or {}).get(META_KEY)
            except (pa.ArrowException, OSError) as err:
                raise StoreError(f"{path}: not a readable parquet file ({_one_line(err)})") from None
            try:
                meta = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                meta = None
            meta = _check_meta(meta, str(path))
            return meta, (pa.Table.from_batches([b]) for b in parquet.iter_batches(BATCH_ROWS)), str(path)
        if not path.is_dir():
            raise StoreError(f"{path}: export not found (a parquet file or a save_to_disk folder)")
        datasets = _datasets()
        try:
            source = datasets.load_from_disk(str(path))
        except Exception as err:  # noqa: BLE001 -- datasets raises many types
            raise StoreError(f"{path}: not a readable Hugging Face dataset ({_one_line(err)})") from None
        source = _single(source, datasets, path, None)
        where = str(path)
    else:
        where = "the given dataset"
        source = _single(source, _datasets(), where, None)
    meta = _meta_from_description(source, where)
    arrow = source.with_format("arrow")
    return meta, (arrow[a:a + BATCH_ROWS] for a in range(0, len(source), BATCH_ROWS)), where


def store_from_hf(source: str | Path | Any, out_store: str | Path, overwrite: bool = False) -> Path:
    """Rebuild an embedding store at `out_store` from what `export_store` wrote (a save_to_disk folder, a
    parquet file, or the `datasets.Dataset` loaded from one): the same rows, bit-identical embeddings, same
    attributes."""
    out_store = Path(out_store)
    if out_store.exists() and not overwrite:
        raise StoreError(f"{out_store}: already exists; choose another path or pass overwrite=True")
    meta, tables, where = _tables(source)
    dim = meta["dim"]
    needed = ("name", "prompt", "kind", "seed", "image", "embedding")
    blocks: list[np.ndarray] = []
    columns: dict[str, list[Any]] = {f: [] for f in needed[:-1]}
    for table in tables:
        missing = [c for c in needed if c not in table.column_names]
        if missing:
            raise StoreError(f"{where}: missing column(s) {missing}; columns: "
                             f"{', '.join(table.column_names)}")
        for f, values in columns.items():
            values.extend(table.column(f).to_pylist())
        flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        if flat.size != table.num_rows * dim:
            raise StoreError(f"{where}: embeddings hold {flat.size} values for {table.num_rows} rows of "
                             f"dim {dim}")
        blocks.append(np.asarray(flat, dtype=np.float32).reshape(-1, dim))
    x = np.concatenate(blocks) if blocks else np.zeros((0, dim), dtype=np.float32)
    base = out_store.absolute().parent.resolve()
    images = None
    if "image" in meta.get("fields", []):
        images = [Path(os.path.relpath(p, base)).as_posix() if p else "" for p in columns["image"]]
    attrs = {k: v for k, v in (meta.get("attrs") or {}).items() if k not in _OWN_ATTRS}
    if not len(x):
        EmbeddingStore.create(out_store, dim, meta["space"], normalized=meta["normalized"],
                              dtype=meta.get("dtype", "float32"), overwrite=overwrite, attrs=attrs,
                              optional=("seed", "image") if images is not None else ("seed",)).close()
        return out_store
    return write_store(out_store, x, columns["name"], columns["prompt"], columns["kind"], meta["space"],
                       normalized=meta["normalized"], seeds=[int(s) for s in columns["seed"]], images=images,
                       dtype=meta.get("dtype", "float32"), attrs=attrs,
                       chunk_rows=int(meta.get("chunk_rows", 4096)))
