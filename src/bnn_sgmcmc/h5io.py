"""Reading and writing the workflow's files: HDF5 data sets, raw arrays, JSON records.

Every writer goes through :func:`atomic_path`: it writes a temporary file beside
the target and renames it into place only when complete, so that a failed or
killed job never leaves a half-written output that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from bnn_sgmcmc.data import SPLITS, DataError, ImageData, Split

#: Version of the data file layout documented in docs/schema.md.
DATA_SCHEMA_VERSION = 1
#: Multiply the stored uint8 pixels by this to get values in [0, 1].
PIXEL_SCALE = 1.0 / 255.0


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, record: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------- raw arrays

RAW_KEYS = tuple(f"{s}_{a}" for s in SPLITS for a in ("images", "labels"))


def write_raw(path: str | os.PathLike, data: ImageData) -> None:
    """The downloaded arrays as one compressed ``.npz`` (keys ``train_images`` ...)."""
    arrays = {f"{n}_{a}": getattr(s, a) for n, s in data.splits().items() for a in ("images", "labels")}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def read_raw(path: str | os.PathLike) -> ImageData:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in RAW_KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path} lacks the arrays {missing}. Delete it and rerun the download rule."
                )
            arrays = {k: npz[k] for k in RAW_KEYS}
    except (OSError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path} is not a readable .npz file ({err}). Delete it and rerun.") from err
    return ImageData(
        **{s: Split(arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in SPLITS}
    )


# --------------------------------------------------------------------------- data HDF5


def _attr(value: Any) -> Any:
    # HDF5 attributes hold scalars, strings and arrays; nested records go in as JSON.
    if isinstance(value, (dict, list, tuple)) and not (
        isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)
    ):
        return json.dumps(value)
    return "" if value is None else value


def write_data_h5(
    path: str | os.PathLike,
    data: ImageData,
    *,
    num_classes: int,
    attrs: dict[str, Any],
    split_attrs: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Write the preprocessed data file (layout in docs/schema.md), atomically."""
    image_shape = data.train.images.shape[1:]
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["schema_version"] = DATA_SCHEMA_VERSION
            h5.attrs["num_classes"] = int(num_classes)
            h5.attrs["image_shape"] = np.asarray(image_shape, dtype=np.int64)
            h5.attrs["pixel_scale"] = PIXEL_SCALE
            for key, value in attrs.items():
                h5.attrs[key] = _attr(value)
            for name, split in data.splits().items():
                group = h5.create_group(name)
                n = len(split.labels)
                group.create_dataset(
                    "images",
                    data=split.images,
                    chunks=(min(n, 1024), *image_shape),
                    compression="gzip",
                    compression_opts=4,
                    shuffle=True,
                )
                group.create_dataset("labels", data=split.labels)
                group.attrs["rows"] = n
                for key, value in (split_attrs or {}).get(name, {}).items():
                    group.attrs[key] = _attr(value)


def read_data_h5(path: str | os.PathLike) -> tuple[ImageData, dict[str, Any]]:
    """Read the data file; check its layout; return the arrays and the root attributes."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist. Run the preprocess rule first.")
    with h5py.File(path, "r") as h5:
        missing = [f"{s}/{a}" for s in SPLITS for a in ("images", "labels") if f"{s}/{a}" not in h5]
        missing += [a for a in ("num_classes", "image_shape", "pixel_scale") if a not in h5.attrs]
        if missing:
            raise DataError(
                f"{path} lacks {', '.join(missing)}; it was not written by this workflow's "
                "preprocess rule. Delete it and rerun."
            )
        data = ImageData(**{s: Split(h5[s]["images"][...], h5[s]["labels"][...]) for s in SPLITS})
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in h5.attrs.items()}
    return data, attrs
