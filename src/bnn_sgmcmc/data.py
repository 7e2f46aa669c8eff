"""MNIST-shaped image data: loading from every supported source, validation, synthesis.

Every source goes through :func:`load_source` and comes out as the same
:class:`ImageData` (uint8 images of shape ``[n, height, width]``, integer labels),
so that later steps never know where the data came from.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnn_sgmcmc.errors import DataError
from bnn_sgmcmc.sources import (
    GZIP_MAGIC,
    SOURCE_FORMS_HELP,
    IdxHeaderError,
    Source,
    find_idx_files,
    read_idx_header,
    resolve_source,
)

SPLITS = ("train", "test")
#: MD5 sums of LeCun's published gzipped MNIST files, to recognise an untouched copy.
PUBLISHED_MD5 = {
    "f68b3c2dcbeaaa9fbdd348bbdeb94873": "train-images-idx3-ubyte.gz",
    "d53e105ee54ea40749a09fcbcd1e9432": "train-labels-idx1-ubyte.gz",
    "9fb629c4189551a2d022fa330f9573f3": "t10k-images-idx3-ubyte.gz",
    "ec29112dd5afa0611ce80d1b7f02629c": "t10k-labels-idx1-ubyte.gz",
}
IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}


@dataclass(frozen=True)
class Split:
    """One split: uint8 images ``[n, height, width]`` and uint8 labels ``[n]``."""

    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class ImageData:
    train: Split
    test: Split

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "test": self.test}


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and seed of the synthetic data set (see :func:`make_synthetic`)."""

    n_train: int = 2048
    n_test: int = 512
    seed: int = 0
    image_shape: tuple[int, int] = (28, 28)
    num_classes: int = 10


# --------------------------------------------------------------------------- IDX


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Read one IDX file of unsigned bytes (gzipped or not) as a numpy array.

    ``kind`` is ``"images"`` (magic 0x00000803, 3-D) or ``"labels"`` (0x00000801, 1-D).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file {path} does not exist. Check data.source.")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:  # gzip, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(
                f"{path} is a damaged gzip file ({err}). Download it again."
            ) from err
    stream = io.BytesIO(raw)
    expected = IDX_MAGIC[kind]
    try:
        magic, dims = read_idx_header(stream)
    except IdxHeaderError as err:
        if err.magic == expected:  # the right magic number, then the file ends within the dimensions
            raise DataError(f"{path}: {err}. The file is truncated or damaged: download it again.") from None
        magic, dims = err.magic, ()
    if magic != expected:
        found = "a file shorter than 4 bytes" if magic is None else f"0x{magic:08x}"
        raise DataError(
            f"{path} has IDX magic number {found}, but MNIST {kind} files start with "
            f"0x{expected:08x}. The file is not an MNIST {kind} IDX file (or is damaged): "
            "check which file sits under this name, or download it again."
        )
    body = stream.read()
    if len(body) != int(np.prod(dims)):
        raise DataError(
            f"{path}: the header announces shape {dims} ({int(np.prod(dims))} bytes) "
            f"but the file holds {len(body)} bytes of data. The file is truncated or "
            "damaged: download it again."
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def load_idx_folder(folder: Path) -> tuple[ImageData, list[Path]]:
    """Load the four MNIST IDX files from ``folder``; return the data and the files read."""
    files = find_idx_files(Path(folder))
    missing = [role for role, path in files.items() if path is None]
    if missing:
        raise DataError(
            f"The IDX folder {folder} lacks the files for {', '.join(missing)}. "
            f"{SOURCE_FORMS_HELP}"
        )
    arrays = {role: read_idx(path, role.split("_")[1]) for role, path in files.items()}
    data = ImageData(
        train=Split(arrays["train_images"], arrays["train_labels"]),
        test=Split(arrays["test_images"], arrays["test_labels"]),
    )
    return data, [p for p in files.values() if p is not None]


# --------------------------------------------------------------------------- Hugging Face


def _decode_image(value: Any) -> np.ndarray:
    from PIL import Image

    if isinstance(value, dict):  # the Image feature's storage: {"bytes": ..., "path": ...}
        if value.get("bytes") is not None:
            return np.asarray(Image.open(io.BytesIO(value["bytes"])))
        return np.asarray(Image.open(value["path"]))
    if isinstance(value, (bytes, bytearray)):
        return np.asarray(Image.open(io.BytesIO(value)))
    return np.asarray(value)


def _split_from_hf(ds: Any, split: str, image_column: str, label_column: str, where: str) -> Split:
    for column in (image_column, label_column):
        if column not in ds.column_names:
            raise DataError(
                f"{where}: split '{split}' has no column '{column}' (columns: "
                f"{', '.join(ds.column_names)}). Set data.image_column and "
                "data.label_column to the names this data set uses."
            )
    from datasets import Image

    if isinstance(ds.features[image_column], Image):
        # Decode ourselves: PIL objects one by one are slower and hide the raw mode.
        ds = ds.cast_column(image_column, Image(decode=False))
    images = [_decode_image(v) for v in ds[image_column]]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(
            f"{where}: split '{split}' mixes image shapes {sorted(shapes)[:5]}; "
            "all images must have one shape, as in MNIST (28x28 grey)."
        )
    labels = np.asarray(ds[label_column])
    return Split(np.stack(images).astype(np.uint8, copy=False), labels)


def load_hf(location: str, *, local: bool, image_column: str, label_column: str) -> ImageData:
    """Load train and test splits with ``datasets.load_dataset`` (hub id or local folder)."""
    import datasets

    where = f"parquet folder {location}" if local else f"Hugging Face dataset '{location}'"
    try:
        dd = datasets.load_dataset(location)
    except Exception as err:  # the hub raises many kinds; all mean the same to the user
        if local:
            raise DataError(
                f"Could not read the {where} with datasets.load_dataset: "
                f"{type(err).__name__}: {err}. The folder must hold train and test "
                "parquet files (for example train-00000-of-00001.parquet) with image "
                "and label columns, as the hub's MNIST does."
            ) from err
        raise DataError(
            f"Could not load the {where}: {type(err).__name__}: {err}. The hub is "
            "unreachable from here, the id is wrong, or HF_DATASETS_OFFLINE=1 is set "
            "without a cached copy. Offline, point data.source at a local folder of the "
            "MNIST IDX files (for example --config data='{source: /shared/mnist}'), at a local "
            "folder in the hub's parquet layout, or use 'synthetic'."
        ) from err
    missing = [s for s in SPLITS if s not in dd]
    if missing:
        raise DataError(
            f"The {where} has splits {sorted(dd)} but lacks {missing}; both a train and a "
            "test split are needed (file names starting with train- and test-)."
        )
    return ImageData(
        **{s: _split_from_hf(dd[s], s, image_column, label_column, where) for s in SPLITS}
    )


# --------------------------------------------------------------------------- synthetic


def _draw_strokes(rng: np.random.Generator, shape: tuple[int, int], n_strokes: int) -> np.ndarray:
    """A digit-like glyph: a few thick line segments inside the central box."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    glyph = np.zeros(shape)
    lo, hi = 0.25, 0.75
    for _ in range(n_strokes):
        (y0, y1), (x0, x1) = rng.uniform(lo * h, hi * h, 2), rng.uniform(lo * w, hi * w, 2)
        dy, dx = y1 - y0, x1 - x0
        t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-9), 0, 1)
        dist2 = (yy - y0 - t * dy) ** 2 + (xx - x0 - t * dx) ** 2
        glyph = np.maximum(glyph, np.exp(-dist2 / (2 * (0.06 * min(h, w)) ** 2)))
    return glyph


def make_synthetic(spec: SyntheticSpec) -> ImageData:
    """A deterministic, learnable MNIST-shaped data set generated from ``spec.seed``.

    Each class has a glyph of three thick strokes. An example is its class glyph,
    shifted by up to two pixels, dimmed, blended with another class's glyph for a
    fifth of the examples (so that some examples are genuinely ambiguous), and
    noised. Classes are balanced; the same spec always gives the same bytes.
    """
    root = np.random.SeedSequence([spec.seed, 0x5EED])
    glyph_seq, *split_seqs = root.spawn(1 + len(SPLITS))
    glyph_rng = np.random.default_rng(glyph_seq)
    glyphs = np.stack(
        [_draw_strokes(glyph_rng, spec.image_shape, 3) for _ in range(spec.num_classes)]
    )
    sizes = {"train": spec.n_train, "test": spec.n_test}
    splits = {}
    for split, seq in zip(SPLITS, split_seqs):
        rng = np.random.default_rng(seq)
        n = sizes[split]
        labels = rng.permutation(np.arange(n) % spec.num_classes)
        other = (labels + rng.integers(1, spec.num_classes, n)) % spec.num_classes
        blend = np.where(rng.random(n) < 0.2, rng.uniform(0.25, 0.5, n), 0.0)
        images = (1 - blend)[:, None, None] * glyphs[labels] + blend[:, None, None] * glyphs[other]
        shifts = rng.integers(-2, 3, size=(n, 2))
        for i, (dy, dx) in enumerate(shifts):
            images[i] = np.roll(images[i], (dy, dx), axis=(0, 1))
        images = images * rng.uniform(0.6, 1.0, n)[:, None, None]
        images = images + rng.normal(0, 0.08, images.shape)
        pixels = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
        splits[split] = Split(pixels, labels.astype(np.uint8))
    return ImageData(**splits)


# --------------------------------------------------------------------------- validation


def validate(data: ImageData, image_shape: tuple[int, int], num_classes: int, where: str) -> None:
    """Raise DataError unless every split has matching counts, the shape and labels in range."""
    for name, split in data.splits().items():
        images, labels = split.images, split.labels
        if images.ndim != 3 or tuple(images.shape[1:]) != tuple(image_shape):
            expected = f"expected [n, {image_shape[0]}, {image_shape[1]}] (grey images of data.image_shape = {list(image_shape)})"
            if images.ndim == 4 and tuple(images.shape[1:3]) == tuple(image_shape):
                # Height and width already match: the channels are the problem, not image_shape.
                fix = (f"They have {images.shape[3]} colour channels; this model takes grey images only. "
                       "Use a grey-scale source (or convert the images to grey).")
            else:
                fix = "Use an MNIST-shaped source or set data.image_shape to the images' size."
            raise DataError(f"{where}: {name} images have shape {tuple(images.shape)}, {expected}. {fix}")
        if images.dtype != np.uint8:
            raise DataError(
                f"{where}: {name} images have dtype {images.dtype}, expected uint8 pixels 0..255."
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{where}: {name} has {len(images)} images but {labels.shape[0] if labels.ndim else 0} "
                "labels; images and labels must match one to one. The image and label files "
                "do not belong together: fetch both from the same release."
            )
        if len(labels) == 0:
            raise DataError(f"{where}: the {name} split is empty.")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{where}: {name} labels have dtype {labels.dtype}, expected integers.")
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise DataError(
                f"{where}: {bad.size} {name} labels lie outside 0..{num_classes - 1} "
                f"(for example {sorted(set(bad.tolist()))[:5]}). Check the label files, or set "
                "data.num_classes if the data set really has more classes."
            )


def as_uint8_labels(data: ImageData) -> ImageData:
    """Store labels as uint8 (validated to lie in 0..num_classes-1 < 256 beforehand)."""
    return ImageData(
        **{n: Split(s.images, s.labels.astype(np.uint8)) for n, s in data.splits().items()}
    )


# --------------------------------------------------------------------------- subsets


def subset_indices(n: int, size: int, seed: int, split: str) -> np.ndarray:
    """``size`` of ``range(n)`` drawn without replacement from ``seed``, in increasing order.

    Each split has its own stream (the split's name is part of the seed), so a
    training subset does not change with the test subset's size.
    """
    rng = np.random.default_rng([int(seed), SPLITS.index(split)])
    return np.sort(rng.choice(n, size=size, replace=False))


def take_subset(data: ImageData, subset: dict[str, Any], seed: int, where: str) -> tuple[ImageData, dict[str, Any]]:
    """Keep ``subset[split]`` images of each split (null: all), drawn by :func:`subset_indices`.

    ``seed`` is the run's seed, used where ``subset['seed']`` is null. Returns the
    data and a record of the draw (sizes, seed, SHA-256 of the kept indices) for
    the data file; raises DataError where a split has fewer images than asked.
    """
    seed = int(seed if subset["seed"] is None else subset["seed"])
    splits, record = {}, {}
    for name, split in data.splits().items():
        size = subset[name]
        n = len(split.labels)
        if size is None:
            splits[name] = split
            continue
        if size > n:
            raise DataError(
                f"{where}: data.subset.{name} = {size} exceeds the {n} {name} images of the source; lower it, "
                "or set it to null to keep them all."
            )
        keep = subset_indices(n, int(size), seed, name)
        splits[name] = Split(split.images[keep], split.labels[keep])
        record[name] = {"of": n, "kept": int(size), "indices_sha256": sha256(keep.astype(np.int64))}
    return ImageData(**splits), ({"seed": seed, **record} if record else {})


# --------------------------------------------------------------------------- entry points


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def summarise(data: ImageData, num_classes: int) -> dict[str, Any]:
    """Row counts, per-class counts and SHA-256 of every array, by split."""
    return {
        name: {
            "rows": int(len(split.labels)),
            "class_counts": np.bincount(split.labels, minlength=num_classes).tolist(),
            "images_sha256": sha256(split.images),
            "labels_sha256": sha256(split.labels),
        }
        for name, split in data.splits().items()
    }


def file_digest(path: Path) -> dict[str, Any]:
    raw = Path(path).read_bytes()
    return {
        "path": str(Path(path).resolve()),
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "md5": hashlib.md5(raw).hexdigest(),
    }


def load_source(data_config: dict[str, Any], seed: int) -> tuple[ImageData, dict[str, Any]]:
    """Load and validate the data set that ``data_config`` (the config's ``data`` block) names.

    Returns the data (labels as uint8) and a provenance record: the resolved
    source, the files read with their digests, and per-split counts and digests.
    """
    source: Source = resolve_source(data_config["source"])
    image_shape = tuple(data_config["image_shape"])
    num_classes = int(data_config["num_classes"])
    files: list[Path] = []
    if source.form == "synthetic":
        syn = data_config["synthetic"]
        spec = SyntheticSpec(
            n_train=int(syn["n_train"]),
            n_test=int(syn["n_test"]),
            seed=int(seed if syn["seed"] is None else syn["seed"]),
            image_shape=image_shape,  # type: ignore[arg-type]
            num_classes=num_classes,
        )
        data = make_synthetic(spec)
        details: dict[str, Any] = {"synthetic": spec.__dict__ | {"image_shape": list(image_shape)}}
    elif source.form == "idx":
        data, files = load_idx_folder(Path(source.location))
        details = {}
    else:
        data = load_hf(
            source.location,
            local=source.form == "parquet",
            image_column=data_config["image_column"],
            label_column=data_config["label_column"],
        )
        if source.form == "parquet":
            files = sorted(Path(source.location).rglob("*.parquet"))
        details = {}
    validate(data, image_shape, num_classes, where=source.describe())
    data = as_uint8_labels(data)
    digests = [file_digest(p) for p in files]
    if source.form == "idx":
        details["published_mnist"] = all(d["md5"] in PUBLISHED_MD5 for d in digests)
    record = {
        "source": data_config["source"],
        "form": source.form,
        "location": source.location,
        "files": digests,
        "splits": summarise(data, num_classes),
        **details,
    }
    return data, record
