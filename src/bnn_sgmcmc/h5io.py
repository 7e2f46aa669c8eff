"""Reading and writing the workflow's files: HDF5 data sets, raw arrays, JSON records.

Every writer goes through :func:`atomic_path`: it writes a temporary file beside
the target and renames it into place only when complete, so that a failed or
killed job never leaves a half-written output that looks finished.

Every HDF5 file the workflow writes (data, warmup, predictive, gathered,
checkpoints) carries the SHA-256 of each dataset's contents in the dataset's
``sha256`` attribute and of the root's other attributes in ``attrs_sha256``;
every reader checks what it reads against them, so that a file changed after
it was written (a disk or copy error, an edit) stops the job that reads it,
naming the file, instead of flowing into the reports (:class:`DamagedFileError`).
Files written before the digests existed have none, and are read as before.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from bnn_sgmcmc.data import SPLITS, ImageData, Split
from bnn_sgmcmc.errors import DataError, os_error_fields

#: Version of the data file layout documented in docs/schema.md.
DATA_SCHEMA_VERSION = 1
#: Multiply the stored uint8 pixels by this to get values in [0, 1].
PIXEL_SCALE = 1.0 / 255.0


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    target = Path(path)
    for attempt in range(3):  # a job beside this one may remove an empty parent (a checkpoint folder) meanwhile
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    # A writer killed before its rename (SIGKILL, a lost node) left its temporary file: only this job writes
    # this target, so any other temporary file of it is such a leftover.
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        stale.unlink(missing_ok=True)
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


# --------------------------------------------------------------------------- integrity

#: The attribute of every dataset written here that holds the SHA-256 of its dtype, shape and bytes.
DATASET_DIGEST = "sha256"
#: The root attribute that holds the SHA-256 of the root's other attributes (as :func:`read_attrs` reads them).
ATTRS_DIGEST = "attrs_sha256"


class DamagedFileError(DataError):
    """A file whose contents no longer match the digests written with them."""

    def __init__(self, path: str | os.PathLike, what: str) -> None:
        super().__init__(
            f"{path} is damaged: {what} no longer match the SHA-256 digest written with them, so the file changed "
            f"after it was written (a disk or copy error, or an edit). Remove it and run snakemake again, which "
            f"remakes it and what depends on it: rm {path}"
        )


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    import hashlib

    array = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{array.dtype.str}|{array.shape}|".encode())
    h.update(array.reshape(-1).view(np.uint8) if array.size else b"")
    return h.hexdigest()


def attrs_digest(attrs: dict[str, Any]) -> str:
    """SHA-256 of attributes as :func:`read_attrs` reads them (JSON, keys sorted)."""
    import hashlib

    return hashlib.sha256(json.dumps(attrs, sort_keys=True, default=str).encode()).hexdigest()


def _create_dataset(group: h5py.Group, name: str, array: np.ndarray, **options: Any) -> None:
    """A dataset with its digest (:data:`DATASET_DIGEST`)."""
    group.create_dataset(name, data=array, **options).attrs[DATASET_DIGEST] = array_digest(array)


def _seal_attrs(h5: h5py.File) -> None:
    """Write the root attributes' digest (:data:`ATTRS_DIGEST`), once every other root attribute is written."""
    h5.attrs[ATTRS_DIGEST] = attrs_digest(read_attrs(h5))


def _read_dataset(dataset: h5py.Dataset, path: str | os.PathLike) -> np.ndarray:
    """A dataset's contents, checked against its digest where it has one."""
    value = dataset[...]
    expected = dataset.attrs.get(DATASET_DIGEST)
    if expected is not None and array_digest(value) != (expected.decode() if isinstance(expected, bytes) else expected):
        raise DamagedFileError(path, f"the contents of its dataset '{dataset.name.lstrip('/')}'")
    return value


def _check_attrs(h5: h5py.File, attrs: dict[str, Any], path: str | os.PathLike) -> None:
    """Check the root attributes ``attrs`` (as read) against their digest, where the file has one."""
    expected = h5.attrs.get(ATTRS_DIGEST)
    if expected is not None and attrs_digest(attrs) != expected:
        raise DamagedFileError(path, "its attributes")


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
                _create_dataset(group, "images", split.images, chunks=(min(n, 1024), *image_shape),
                                compression="gzip", compression_opts=4, shuffle=True)
                _create_dataset(group, "labels", split.labels)
                group.attrs["rows"] = n
                for key, value in (split_attrs or {}).get(name, {}).items():
                    group.attrs[key] = _attr(value)
            _seal_attrs(h5)


def read_data_h5(path: str | os.PathLike, splits: Sequence[str] = SPLITS) -> tuple[ImageData, dict[str, Any]]:
    """Read the data file; check its layout; return the arrays and the root attributes.

    Only the arrays of ``splits`` are read (say ``("test",)`` for a report);
    the others come back empty, with the right image shape. Attributes are
    always complete.
    """
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
        data = ImageData(**{
            s: Split(_read_dataset(h5[s]["images"], path), _read_dataset(h5[s]["labels"], path)) if s in splits
            else Split(np.zeros((0, *h5[s]["images"].shape[1:]), np.uint8), np.zeros(0, np.uint8))
            for s in SPLITS
        })
        _check_attrs(h5, read_attrs(h5), path)
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in h5.attrs.items() if k != ATTRS_DIGEST}
        attrs["splits"] = {s: read_attrs(h5[s]) for s in SPLITS}
    return data, attrs


# --------------------------------------------------------------------------- sampler files
#
# Warmup files, predictive files and the checkpoints beside them share one set
# of writers: a checkpoint is simply a file of the same layout whose ``step``
# attribute is short of the phase's total, plus what resuming needs.

#: 2: shifted and OOD sets; 3: log-probabilities instead of probabilities, function-space draws,
#: the cycle of each kept sample, the whole kernel state in checkpoints.
PREDICTIVE_SCHEMA_VERSION = 3
#: 2: the whole kernel state (``/state``) instead of the weights (``/params``).
WARMUP_SCHEMA_VERSION = 2


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, path))
        else:
            flat[path] = np.asarray(value)
    return flat


def digest(arrays: dict[str, Any], attrs: dict[str, Any] | None = None) -> str:
    """SHA-256 of nested arrays (every name, dtype, shape and byte) and of ``attrs`` (JSON): written with a
    checkpoint and checked before it is trusted, so that any change to its contents is seen."""
    import hashlib

    h = hashlib.sha256()
    for name, array in sorted(_flatten(arrays).items()):
        array = np.ascontiguousarray(array)
        h.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        h.update(array.tobytes())
    # Read back from HDF5, integers are numpy scalars: .item() makes them what was written.
    h.update(json.dumps(attrs or {}, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item") else str(o)).encode())
    return h.hexdigest()


def lookup(tree: dict[str, Any], path: str) -> Any:
    """``tree['a']['b']`` for the path ``a/b`` of a tree read back from HDF5."""
    for part in path.split("/"):
        tree = tree[part]
    return tree


def read_tree(group: h5py.Group, skip: tuple[str, ...] = (), path: str | os.PathLike = "") -> dict[str, Any]:
    """Read HDF5 groups back into a nested dict of numpy arrays, leaving out the top-level names in ``skip``;
    each dataset checked against its digest (a :class:`DamagedFileError` naming the file ``path``)."""
    path = path or group.file.filename
    return {
        key: read_tree(item, path=path) if isinstance(item, h5py.Group) else _read_dataset(item, path)
        for key, item in group.items() if key not in skip
    }


def write_attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        obj.attrs[key] = _attr(value)


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """Attributes, with JSON strings decoded back into records (but the digests of :func:`read_tree`'s checks)."""
    out: dict[str, Any] = {}
    for key, value in obj.attrs.items():
        if key in (ATTRS_DIGEST, DATASET_DIGEST):
            continue
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


@contextlib.contextmanager
def space_named(path: str | os.PathLike, needed: int) -> Iterator[None]:
    """Turn a full disk while writing ``path`` into an OSError (ENOSPC, with ``path``) that says how much the write
    needed (``needed`` bytes, at most) and how much is free once its temporary file is gone."""
    import errno
    import shutil

    try:
        yield
    except OSError as err:
        code = os_error_fields(err)[0]
        if code not in (errno.ENOSPC, errno.EDQUOT):
            raise
        free = shutil.disk_usage(Path(path).parent).free
        raise OSError(code, f"No space left on device (the file needs up to {needed / 1e6:.1f} MB, "
                                   f"{free / 1e6:.1f} MB are free)", str(path)) from err


def write_arrays(path: str | os.PathLike, arrays: dict[str, Any], attrs: dict[str, Any]) -> None:
    """Write nested arrays and root attributes to ``path`` atomically.

    Large float arrays (predictive probabilities, weights) are chunked and
    gzip-compressed; small ones are stored plainly. A full disk is an OSError
    that names the file and the space it needed (:func:`space_named`).
    """
    flat = _flatten(arrays)
    with space_named(path, sum(array.nbytes for array in flat.values())), atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            for name, array in flat.items():
                options: dict[str, Any] = {}
                if array.size > 65536:
                    options = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "chunks": True}
                _create_dataset(h5, name, array, **options)
            write_attrs(h5, attrs)
            _seal_attrs(h5)


def read_arrays(
    path: str | os.PathLike, required: tuple[str, ...] = (), skip: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a file written by :func:`write_arrays` (but its top-level groups in ``skip``).

    Names the file and what is missing if it is incomplete.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist.")
    try:
        with h5py.File(path, "r") as h5:
            missing = [name for name in required if name not in h5]
            if missing:
                raise DataError(
                    f"{path} lacks the datasets {', '.join(missing)}; it is incomplete or was not "
                    "written by this workflow. Delete it and rerun the rule that makes it."
                )
            attrs = read_attrs(h5)
            _check_attrs(h5, attrs, path)
            return read_tree(h5, skip, path), attrs
    except OSError as err:
        raise DataError(f"{path} is not a readable HDF5 file ({err}). Delete it and rerun.") from err


#: The function-space draws: every recorded kept sample's log-probability of the true class of every
#: test example, [D, C, n] float16 (kept samples first), beside their steps in ``draws/step`` [D].
FUNCTION_SPACE = "draws/test/true_class_log_prob"

#: Datasets every predictive file has (beside one group per evaluation set).
PREDICTIVE_REQUIRED = (
    "chain",
    "test/log_probs",
    "test/mean_entropy",
    "test/last_log_probs",
    "test/labels",
    "trace/sample_step",
    "trace/grad_evals",
    "trace/wall_seconds",
    "warmup/trace/step",
)


def _chain_axis(path: str, array: np.ndarray) -> int | None:
    """Which axis of a predictive-file dataset runs over chains (None: shared by all chains)."""
    leaf = path.rsplit("/", 1)[-1]
    if path == "chain" or leaf in ("log_probs", "mean_entropy", "last_log_probs"):
        return 0
    if path.startswith("weights/params/"):
        return 1
    if path.startswith(("trace/", "warmup/trace/", "draws/", "kernel_trace/", "warmup/kernel_trace/")) and array.ndim >= 2:
        return 1
    return None


def check_predictive_version(path: str | os.PathLike, attrs: dict[str, Any]) -> None:
    """Refuse a predictive file of another layout version, saying how to remake it."""
    version = attrs.get("schema_version")
    if version != PREDICTIVE_SCHEMA_VERSION:
        raise DataError(
            f"{path} has predictive file layout version {version}; this workflow reads version "
            f"{PREDICTIVE_SCHEMA_VERSION} (exact log-probabilities and function-space draws, docs/schema.md). "
            "It was made by an older version of the workflow: rerun sampling, for example with "
            "`snakemake --cores all --forcerun sample`."
        )


def gather_predictive(paths: list[str], out: str | os.PathLike) -> None:
    """Concatenate shards' predictive files along their chain axes; shared arrays must agree."""
    shards = [read_arrays(p, required=PREDICTIVE_REQUIRED) for p in paths]
    for path, (_, attrs) in zip(paths, shards):
        check_predictive_version(path, attrs)
    flats = [_flatten(arrays) for arrays, _ in shards]
    names = set(flats[0])
    for path, flat in zip(paths, flats):
        if set(flat) != names:
            raise DataError(
                f"{path} holds {sorted(set(flat) ^ names)} where {paths[0]} does not; the shards "
                "come from different configs. Rerun sampling for every shard."
            )
    joined: dict[str, Any] = {}
    for name in sorted(names):
        parts = [flat[name] for flat in flats]
        axis = _chain_axis(name, parts[0])
        if axis is None:
            for path, part in zip(paths[1:], parts[1:]):
                if part.shape != parts[0].shape or not np.array_equal(part, parts[0]):
                    raise DataError(
                        f"{path}: '{name}' differs from {paths[0]}; the shards come from different "
                        "configs or data. Rerun sampling for every shard."
                    )
            joined[name] = parts[0]
        else:
            joined[name] = np.concatenate(parts, axis=axis)
    attrs = dict(shards[0][1])
    attrs["chains"] = int(joined["chain"].shape[0])
    attrs["shard"] = -1
    attrs["shard_runs"] = [
        {k: a.get(k) for k in ("shard", "host", "device", "compile_seconds", "run_seconds", "warmup_run_seconds", "warmup_compile_seconds")}
        | {"chains": arrays["chain"].tolist()}
        for arrays, a in shards
    ]
    nested: dict[str, Any] = {}
    for name, array in joined.items():
        node = nested
        *parents, leaf = name.split("/")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = array
    write_arrays(out, nested, attrs)


def _with_probabilities(tree: dict[str, Any]) -> None:
    """Beside each set's ``log_probs`` and ``last_log_probs``, their exponentials ``probs`` and ``last_probs``."""
    for value in list(tree.values()):
        if isinstance(value, dict):
            _with_probabilities(value)
    for name in ("log_probs", "last_log_probs"):
        if name in tree:
            tree[name.replace("log_probs", "probs")] = np.exp(tree[name])


def read_predictive(path: str | os.PathLike, draws: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a predictive file (shard or gathered), checking its layout version and shapes.

    Every set gets ``probs`` and ``last_probs`` (the exponentials of the stored
    log-probabilities) for the metrics that take probabilities. The
    function-space draws (``draws/``, up to hundreds of MB) are read only when
    ``draws`` is true.
    """
    arrays, attrs = read_arrays(path, required=PREDICTIVE_REQUIRED, skip=() if draws else ("draws",))
    check_predictive_version(path, attrs)
    chains = arrays["chain"].shape[0]
    log_probs = arrays["test"]["log_probs"]
    checks = [
        ("test/log_probs", log_probs.ndim == 3 and log_probs.shape[0] == chains, f"[chains={chains}, n, classes]"),
        ("test/mean_entropy", arrays["test"]["mean_entropy"].shape == log_probs.shape[:2], f"{list(log_probs.shape[:2])}"),
        ("test/last_log_probs", arrays["test"]["last_log_probs"].shape == log_probs.shape, f"{list(log_probs.shape)}"),
        ("test/labels", arrays["test"]["labels"].shape == log_probs.shape[1:2], f"[{log_probs.shape[1]}]"),
    ]
    if "draws" in arrays:
        steps, values = arrays["draws"]["step"], lookup(arrays, FUNCTION_SPACE)
        shape = (len(steps), chains, log_probs.shape[1])
        checks.append((FUNCTION_SPACE, values.shape == shape, f"{list(shape)}"))
    for name, ok, expected in checks:
        if not ok:
            raise DataError(f"{path}: '{name}' should have shape {expected}; the file is damaged or foreign. Rerun sampling.")
    _with_probabilities(arrays)
    return arrays, attrs
