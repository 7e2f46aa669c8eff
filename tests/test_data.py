"""Loading every data source, validation, subsets and synthetic data (bnn_sgmcmc.data)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import IDX_NAMES, idx_bytes, write_idx_folder

from bnn_sgmcmc.errors import ConfigError, DataError
from bnn_sgmcmc.data import (
    ImageData,
    Split,
    SyntheticSpec,
    load_source,
    make_synthetic,
    read_idx,
    validate,
)


def load(config: dict, source: str | Path, seed: int = 0):
    config["data"]["source"] = str(source)
    return load_source(config["data"], seed)


def assert_same(a: ImageData, b: ImageData) -> None:
    for name in ("train", "test"):
        np.testing.assert_array_equal(a.splits()[name].images, b.splits()[name].images)
        np.testing.assert_array_equal(a.splits()[name].labels, b.splits()[name].labels)


# --------------------------------------------------------------------------- sources


@pytest.mark.parametrize("folder", ["idx_gz_folder", "idx_plain_folder", "parquet_folder"])
def test_every_source_gives_the_same_arrays(request, base_config, images, folder):
    data, record = load(base_config, request.getfixturevalue(folder))
    assert_same(data, images)
    assert data.train.images.dtype == np.uint8 and data.train.labels.dtype == np.uint8
    assert record["splits"]["train"]["rows"] == 30
    assert record["splits"]["test"]["class_counts"] == [2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    assert len(record["files"]) == (4 if "idx" in folder else 2)
    assert all(len(f["sha256"]) == 64 for f in record["files"])


def test_gzip_is_recognised_by_content_not_name(tmp_path, base_config, images):
    folder = write_idx_folder(tmp_path / "idx", images, gz=False)
    name = IDX_NAMES[("train", "images")]
    raw = (folder / name).read_bytes()
    (folder / name).write_bytes(gzip.compress(raw))  # gzipped, but no .gz suffix
    data, _ = load(base_config, folder)
    assert_same(data, images)


def test_dotted_idx_names_are_accepted(tmp_path, base_config, images):
    folder = write_idx_folder(tmp_path / "idx", images, gz=True)
    for path in folder.iterdir():
        path.rename(path.with_name(path.name.replace("-idx", ".idx")))
    data, _ = load(base_config, folder)
    assert_same(data, images)


def test_parquet_folder_loads_offline(parquet_folder, tmp_path):
    """HF_DATASETS_OFFLINE=1 must not stop a local parquet folder (fresh interpreter, empty cache)."""
    code = (
        "from bnn_sgmcmc.data import load_hf;"
        f"d = load_hf({str(parquet_folder)!r}, local=True, image_column='image', label_column='label');"
        "print(d.train.images.shape, d.test.labels.tolist())"
    )
    env = os.environ | {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "(30, 28, 28)" in out.stdout


def test_unreachable_hub_names_the_offline_forms(tmp_path):
    code = (
        "from bnn_sgmcmc.data import load_hf\nfrom bnn_sgmcmc.errors import DataError\n"
        "try:\n    load_hf('mnist', local=False, image_column='image', label_column='label')\n"
        "except DataError as e:\n    print('MSG', e)\n"
    )
    env = os.environ | {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "MSG" in out.stdout, out.stderr
    message = out.stdout
    assert "Hugging Face dataset 'mnist'" in message
    assert "IDX files" in message and "parquet layout" in message and "'synthetic'" in message


def test_parquet_without_the_image_column_is_refused(base_config, parquet_folder):
    base_config["data"]["image_column"] = "img"
    with pytest.raises(DataError, match="no column 'img'.*data.image_column"):
        load(base_config, parquet_folder)


# --------------------------------------------------------------------------- bad IDX input


def test_a_wrong_magic_number_is_named(tmp_path, base_config, images):
    folder = write_idx_folder(tmp_path / "idx", images, gz=False)
    # A labels file where the images belong: valid IDX, wrong kind.
    (folder / IDX_NAMES[("train", "images")]).write_bytes(idx_bytes(images.train.labels))
    with pytest.raises(DataError, match=r"magic number 0x00000801.*start with 0x00000803"):
        load(base_config, folder)


def test_a_non_idx_file_is_refused(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DataError, match="not an MNIST labels IDX file"):
        read_idx(path, "labels")


def test_a_truncated_idx_file_is_refused(tmp_path, images):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(images.train.images)[:-100])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path, "images")


def test_mismatched_image_and_label_counts(tmp_path, base_config, images):
    folder = write_idx_folder(tmp_path / "idx", images, gz=True)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(images.train.labels[:-3]))
    )
    with pytest.raises(DataError, match="train has 30 images but 27 labels"):
        load(base_config, folder)


def test_labels_out_of_range(tmp_path, base_config, images):
    labels = images.test.labels.copy()
    labels[[0, 5]] = [10, 255]
    bad = ImageData(train=images.train, test=Split(images.test.images, labels))
    folder = write_idx_folder(tmp_path / "idx", bad, gz=True)
    with pytest.raises(DataError, match=r"2 test labels lie outside 0\.\.9 \(for example \[10, 255\]\)"):
        load(base_config, folder)


def test_wrong_image_shape(tmp_path, base_config, images):
    small = ImageData(
        train=Split(images.train.images[:, :20, :20].copy(), images.train.labels),
        test=images.test,
    )
    folder = write_idx_folder(tmp_path / "idx", small, gz=True)
    with pytest.raises(DataError, match=r"train images have shape \(30, 20, 20\), expected \[n, 28, 28\]"):
        load(base_config, folder)


def test_rgb_images_of_the_right_size_are_told_to_be_grey_not_resized(images):
    rgb = ImageData(train=Split(np.repeat(images.train.images[..., None], 3, axis=3), images.train.labels),
                    test=images.test)
    with pytest.raises(DataError) as info:
        validate(rgb, (28, 28), 10, where="src")
    assert str(info.value) == (
        "src: train images have shape (30, 28, 28, 3), expected [n, 28, 28] (grey images of data.image_shape = "
        "[28, 28]). They have 3 colour channels; this model takes grey images only. Use a grey-scale source "
        "(or convert the images to grey)."
    )
    assert "set data.image_shape" not in str(info.value)


def test_validate_accepts_good_data(images):
    validate(images, (28, 28), 10, where="test")


# --------------------------------------------------------------------------- subsets


def test_a_subset_is_a_seeded_draw_without_replacement_in_the_sources_order():
    from bnn_sgmcmc.data import subset_indices

    keep = subset_indices(1000, 200, seed=7, split="train")
    assert len(set(keep.tolist())) == 200 and keep.min() >= 0 and keep.max() < 1000
    assert (np.diff(keep) > 0).all()  # the source's order
    np.testing.assert_array_equal(keep, subset_indices(1000, 200, seed=7, split="train"))
    assert not np.array_equal(keep, subset_indices(1000, 200, seed=8, split="train"))
    assert not np.array_equal(keep, subset_indices(1000, 200, seed=7, split="test"))  # a stream per split
    # Uniform: each of 10 blocks of 100 rows holds about a tenth (binomial sd 5.7 at n = 200, p = 0.1).
    counts = np.bincount(keep // 100, minlength=10)
    assert counts.min() > 2 and counts.max() < 40
    assert subset_indices(1000, 1000, seed=7, split="train").tolist() == list(range(1000))


def test_the_data_file_holds_the_subset_and_records_the_draw(tmp_path, base_config, images):
    import h5py

    from bnn_sgmcmc import h5io, steps
    from bnn_sgmcmc.data import subset_indices

    folder = write_idx_folder(tmp_path / "idx", images, gz=True)
    config = base_config["data"] | {"source": str(folder), "subset": {"train": 12, "test": None, "seed": None}}
    raw, record, h5 = tmp_path / "raw.npz", tmp_path / "provenance.json", tmp_path / "mnist.h5"
    steps.download(data_config=config, seed=5, dataset="mnist", raw=str(raw), record=str(record))
    steps.preprocess(raw=str(raw), record=str(record), data_config=config, seed=5, dataset="mnist", h5=str(h5))
    data, attrs = h5io.read_data_h5(h5)
    keep = subset_indices(30, 12, seed=5, split="train")  # null seed: the run's
    np.testing.assert_array_equal(data.train.images, images.train.images[keep])
    np.testing.assert_array_equal(data.train.labels, images.train.labels[keep])
    np.testing.assert_array_equal(data.test.images, images.test.images)  # null: all of them
    subset = json.loads(attrs["subset"])
    assert subset["seed"] == 5 and subset["train"]["of"] == 30 and subset["train"]["kept"] == 12
    assert "test" not in subset
    with h5py.File(h5) as f:
        assert f["train"].attrs["rows"] == 12
        assert list(f["train"].attrs["class_counts"]) == np.bincount(images.train.labels[keep], minlength=10).tolist()
    # Its own seed draws another subset; the download is the same file.
    other = tmp_path / "other.h5"
    config["subset"] = {"train": 12, "test": 4, "seed": 6}
    steps.preprocess(raw=str(raw), record=str(record), data_config=config, seed=5, dataset="mnist", h5=str(other))
    moved, _ = h5io.read_data_h5(other)
    np.testing.assert_array_equal(moved.train.labels, images.train.labels[subset_indices(30, 12, 6, "train")])
    assert len(moved.test.labels) == 4


def test_a_subset_larger_than_the_data_is_refused_before_and_in_the_job(tmp_path, base_config, images):
    from bnn_sgmcmc import steps
    from bnn_sgmcmc.config import check, known_train_size

    folder = write_idx_folder(tmp_path / "idx", images, gz=True)
    data = base_config["data"] | {"source": str(folder)}
    assert known_train_size(data | {"subset": {"train": 20}}) == (20, "data.subset.train")
    with pytest.raises(ConfigError, match=r"^data.subset.train = 31 exceeds the 30 training images \(the IDX"):
        known_train_size(data | {"subset": {"train": 31}})
    base_config["data"] = data | {"subset": {"train": None, "test": 13, "seed": None}}
    base_config["sampling"]["batch_size"] = 8
    with pytest.raises(ConfigError, match=r"^data.subset.test = 13 exceeds the 12 test images"):
        check(base_config)
    # A source whose size only the job knows: the job refuses it, and writes no data file.
    raw, record, h5 = tmp_path / "raw.npz", tmp_path / "provenance.json", tmp_path / "mnist.h5"
    steps.download(data_config=data, seed=0, dataset="mnist", raw=str(raw), record=str(record))
    with pytest.raises(DataError, match="data.subset.test = 13 exceeds the 12 test images of the source; lower it"):
        steps.preprocess(raw=str(raw), record=str(record), data_config=base_config["data"], seed=0,
                         dataset="mnist", h5=str(h5))
    assert not h5.exists()


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_seeded():
    a, b = make_synthetic(SyntheticSpec(n_train=64, n_test=32)), make_synthetic(SyntheticSpec(n_train=64, n_test=32))
    assert_same(a, b)
    c = make_synthetic(SyntheticSpec(n_train=64, n_test=32, seed=1))
    assert not np.array_equal(a.train.images, c.train.images)


def test_synthetic_is_mnist_shaped_and_balanced(base_config):
    base_config["data"]["synthetic"] |= {"n_train": 200, "n_test": 50}
    data, record = load(base_config, "synthetic", seed=3)
    assert data.train.images.shape == (200, 28, 28) and data.test.images.shape == (50, 28, 28)
    assert data.train.images.dtype == np.uint8
    assert record["splits"]["train"]["class_counts"] == [20] * 10
    assert record["synthetic"]["seed"] == 3  # null in the config: the run's seed
    assert data.train.images.max() > 200 and data.train.images.min() < 30


def test_synthetic_is_learnable_but_not_trivial():
    """Softmax regression, a weaker model than the MLP, must clearly beat chance in 100 steps."""
    data = make_synthetic(SyntheticSpec(n_train=2048, n_test=512))
    x = data.train.images.reshape(2048, -1) / 255.0
    xt = data.test.images.reshape(512, -1) / 255.0
    y, yt = data.train.labels, data.test.labels
    w, b = np.zeros((784, 10)), np.zeros(10)
    for _ in range(100):
        z = x @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        w -= 0.5 * x.T @ p / len(y)
        b -= 0.5 * p.mean(0)
    accuracy = ((xt @ w + b).argmax(1) == yt).mean()
    assert 0.8 < accuracy < 0.99
