"""Where the data come from: the ``data.source`` string resolved to a form and a location, and the IDX files.

:func:`resolve_source` decides which loader (``bnn_sgmcmc.data``) serves a
source, or stops a local path that cannot work; :func:`read_idx_header` reads
the header of an IDX file, for the loader and for the checks that read a local
folder's sizes before any job runs. The Snakefile imports this module, in
whatever environment Snakemake itself runs in: it imports the standard library
only.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from bnn_sgmcmc.errors import ConfigError

SourceForm = Literal["synthetic", "idx", "parquet", "hub"]

#: The four IDX files of MNIST, by role, as LeCun distributes them.
IDX_STEMS: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

SOURCE_FORMS_HELP = (
    "data.source takes one of: 'synthetic' (generated, no download); "
    "a local folder of the MNIST IDX files (train-images-idx3-ubyte[.gz], "
    "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
    "t10k-labels-idx1-ubyte[.gz]); a local folder in the Hugging Face hub's "
    "parquet layout (train and test parquet files with 'image' and 'label' "
    "columns); or a Hugging Face dataset id such as 'mnist'. Only the first "
    "three work offline."
)

#: The first bytes of a gzip file: an IDX file is read gzipped or not, whatever it is called.
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Source:
    """Where a data set comes from, resolved from the ``data.source`` string."""

    form: SourceForm
    location: str

    def describe(self) -> str:
        return {
            "synthetic": "synthetic data generated from the seed",
            "idx": f"IDX files in {self.location}",
            "parquet": f"hub-layout parquet folder {self.location}",
            "hub": f"Hugging Face hub dataset '{self.location}'",
        }[self.form]


def _looks_like_path(value: str) -> bool:
    # Hub ids may contain one '/', so only explicit path forms count as paths.
    return value.startswith(("/", "./", "../", "~")) or value in (".", "..") or "\\" in value


def find_idx_files(folder: Path) -> dict[str, Path | None]:
    """Map each IDX role to the file that holds it in ``folder`` (gzipped or not), or None.

    Accepts LeCun's names (``train-images-idx3-ubyte``) and the dotted variant
    (``train-images.idx3-ubyte``) that some mirrors use.
    """
    found: dict[str, Path | None] = {}
    for role, stem in IDX_STEMS.items():
        dotted = stem.replace("-idx", ".idx")
        candidates = [folder / f"{name}{ext}" for name in (stem, dotted) for ext in ("", ".gz")]
        found[role] = next((c for c in candidates if c.is_file()), None)
    return found


def resolve_source(source: str, key: str = "data.source") -> Source:
    """Decide which loader serves ``source``; raise ConfigError for a local path that cannot work."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{key} is empty. {SOURCE_FORMS_HELP}")
    source = source.strip()
    if source == "synthetic":
        return Source("synthetic", "synthetic")
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        idx = find_idx_files(path)
        if any(idx.values()):
            missing = [IDX_STEMS[role] + "[.gz]" for role, found in idx.items() if found is None]
            if missing:
                raise ConfigError(
                    f"{key}: the IDX folder '{source}' lacks {', '.join(missing)}. "
                    "Put all four MNIST IDX files in the folder (gzipped or not)."
                )
            return Source("idx", str(path))
        if any(path.rglob("*.parquet")):
            return Source("parquet", str(path))
        raise ConfigError(
            f"{key}: the folder '{source}' holds neither MNIST IDX files nor parquet files. "
            f"{SOURCE_FORMS_HELP}"
        )
    if path.exists():
        raise ConfigError(f"{key}: '{source}' is a file, not a folder. {SOURCE_FORMS_HELP}")
    if _looks_like_path(source):
        raise ConfigError(f"{key}: the folder '{source}' does not exist. {SOURCE_FORMS_HELP}")
    return Source("hub", source)


class IdxHeaderError(ValueError):
    """Bytes that do not begin with a whole IDX header.

    ``magic``: their first four bytes as a number (None: there are fewer);
    ``ndim``: the dimensions the header announces, where the magic number is an
    IDX one and the bytes end within them (None where it is not an IDX one).
    """

    def __init__(self, magic: int | None, ndim: int | None = None) -> None:
        if magic is None:
            problem = "fewer than 4 bytes, too short for an IDX magic number"
        elif ndim is None:
            problem = f"magic number 0x{magic:08x}: not an IDX file, whose magic number begins with two zero bytes"
        else:
            problem = f"magic number 0x{magic:08x} announces {ndim} dimensions, but the bytes end within them"
        super().__init__(problem)
        self.magic, self.ndim = magic, ndim


def read_idx_header(stream: BinaryIO) -> tuple[int, tuple[int, ...]]:
    """The magic number and the dimensions (count first) of the IDX file whose bytes ``stream`` reads, read
    from its header, which leaves ``stream`` at the first byte of the data. Raise IdxHeaderError where the
    bytes do not begin with a whole header.

    IDX (LeCun et al., "The MNIST database of handwritten digits"): two zero
    bytes, a byte for the type of the values (0x08: unsigned bytes), a byte for
    the number of dimensions, then each dimension as a big-endian 32-bit integer.
    """
    head = stream.read(4)
    if len(head) < 4:
        raise IdxHeaderError(None)
    magic = int.from_bytes(head, "big")
    if head[:2] != b"\x00\x00":
        raise IdxHeaderError(magic)
    ndim = head[3]
    raw = stream.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise IdxHeaderError(magic, ndim)
    return magic, tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(0, 4 * ndim, 4))


def open_idx(path: Path) -> BinaryIO:
    """The file at ``path`` opened to read its bytes, decompressed where it is gzipped, whatever it is called."""
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def idx_dims(path: Path) -> tuple[int, ...]:
    """The dimensions in an IDX file's header (gzipped or not): count first, read without loading the data.
    Raise ConfigError for a file that is not IDX, or that ends within its header."""
    try:
        with open_idx(path) as fh:
            return read_idx_header(fh)[1]
    except IdxHeaderError as err:
        if err.ndim is None:
            raise ConfigError(f"{path} is not an IDX file (bad magic number).") from None
        raise ConfigError(f"{path}: {err}; the file is truncated or damaged.") from None


def idx_image_shape(path: Path) -> tuple[int, ...]:
    """The image shape in an IDX images file's header (gzipped or not), read without loading the images."""
    return idx_dims(path)[1:]
