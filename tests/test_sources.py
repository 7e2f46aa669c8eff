"""Where the data come from (bnn_sgmcmc.sources): each form of data.source resolved, a local folder that cannot
work refused before any job, and the IDX header read the same gzipped or not."""

from __future__ import annotations

import gzip
import io

import pytest
from conftest import IDX_NAMES, idx_bytes, write_idx_folder

from bnn_sgmcmc.errors import ConfigError
from bnn_sgmcmc.sources import IdxHeaderError, idx_dims, open_idx, read_idx_header, resolve_source


def test_source_forms_are_resolved(idx_gz_folder, parquet_folder):
    assert resolve_source("synthetic").form == "synthetic"
    assert resolve_source(str(idx_gz_folder)).form == "idx"
    assert resolve_source(str(parquet_folder)).form == "parquet"
    assert resolve_source("mnist").form == "hub"
    assert resolve_source("ylecun/mnist").form == "hub"


def test_a_missing_local_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data.source: the folder '.*nowhere' does not exist"):
        resolve_source(str(tmp_path / "nowhere"))


def test_a_folder_without_data_is_a_config_error(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ConfigError, match="neither MNIST IDX files nor parquet files"):
        resolve_source(str(tmp_path))


def test_a_missing_idx_file_is_named(idx_gz_folder):
    (idx_gz_folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ConfigError, match=r"lacks t10k-labels-idx1-ubyte\[\.gz\]"):
        resolve_source(str(idx_gz_folder))


def test_the_idx_header_is_read_the_same_gzipped_or_not_and_a_bad_magic_number_is_named(tmp_path, images):
    plain = write_idx_folder(tmp_path / "plain", images, gz=False) / IDX_NAMES[("train", "images")]
    zipped = tmp_path / "zipped"  # gzipped, whatever it is called
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, zipped):
        with open_idx(path) as fh:
            assert read_idx_header(fh) == (0x00000803, (30, 28, 28))
            assert len(fh.read()) == 30 * 28 * 28  # left at the first byte of the data
        assert idx_dims(path) == (30, 28, 28)
    with pytest.raises(IdxHeaderError, match="magic number 0x3c68746d: not an IDX file") as info:
        read_idx_header(io.BytesIO(b"<html>404 Not Found</html>"))
    assert info.value.magic == 0x3c68746d and info.value.ndim is None
    with pytest.raises(IdxHeaderError, match="fewer than 4 bytes") as info:
        read_idx_header(io.BytesIO(b"\x00\x00"))
    assert info.value.magic is None
    with pytest.raises(IdxHeaderError, match="0x00000803 announces 3 dimensions, but the bytes end within them"):
        read_idx_header(io.BytesIO(idx_bytes(images.train.images)[:10]))
    html = tmp_path / "t10k-images-idx3-ubyte"
    html.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(ConfigError) as refused:
        idx_dims(html)
    assert str(refused.value) == f"{html} is not an IDX file (bad magic number)."
