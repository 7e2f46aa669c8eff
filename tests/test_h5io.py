"""Files: atomic writes, the data HDF5 layout, raw arrays (bnn_sgmcmc.h5io)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bnn_sgmcmc import h5io
from bnn_sgmcmc.errors import DataError


def test_data_h5_round_trip_and_attributes(tmp_path, images):
    path = tmp_path / "mnist.h5"
    h5io.write_data_h5(
        path,
        images,
        num_classes=10,
        attrs={"seed": 7, "data_config": {"source": "synthetic"}, "source": "synthetic"},
        split_attrs={"train": {"class_counts": [3] * 10}},
    )
    data, attrs = h5io.read_data_h5(path)
    np.testing.assert_array_equal(data.train.images, images.train.images)
    np.testing.assert_array_equal(data.test.labels, images.test.labels)
    assert attrs["num_classes"] == 10
    assert attrs["image_shape"] == [28, 28]
    assert attrs["pixel_scale"] == pytest.approx(1 / 255)
    assert attrs["schema_version"] == h5io.DATA_SCHEMA_VERSION
    assert attrs["seed"] == 7 and '"source": "synthetic"' in attrs["data_config"]
    with h5py.File(path) as h5:
        assert h5["train/images"].dtype == np.uint8
        assert h5["train/images"].compression == "gzip"
        assert h5["train"].attrs["rows"] == 30
        assert list(h5["train"].attrs["class_counts"]) == [3] * 10


def test_a_failed_write_leaves_nothing(tmp_path, images):
    path = tmp_path / "out" / "mnist.h5"
    with pytest.raises(TypeError):
        # An attribute h5py cannot store fails mid-write.
        h5io.write_data_h5(path, images, num_classes=10, attrs={"bad": object()})
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_path_keeps_an_existing_file_on_failure(tmp_path):
    path = tmp_path / "record.json"
    h5io.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), h5io.atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert h5io.read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_reading_a_foreign_h5_names_what_is_missing(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5["train/images"] = np.zeros((2, 28, 28), np.uint8)
    with pytest.raises(DataError, match=r"other.h5 lacks train/labels, test/images, test/labels, num_classes"):
        h5io.read_data_h5(path)


def test_raw_round_trip_and_damage(tmp_path, images):
    path = tmp_path / "raw.npz"
    h5io.write_raw(path, images)
    back = h5io.read_raw(path)
    np.testing.assert_array_equal(back.test.images, images.test.images)
    np.savez(path, train_images=images.train.images)
    with pytest.raises(DataError, match=r"lacks the arrays \['train_labels'"):
        h5io.read_raw(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        h5io.read_raw(path)


def test_reading_only_the_test_split(tmp_path, images):
    path = tmp_path / "data.h5"
    h5io.write_data_h5(path, images, num_classes=10, attrs={"source": "test"})
    data, attrs = h5io.read_data_h5(path, splits=("test",))
    assert (data.test.images == images.test.images).all() and (data.test.labels == images.test.labels).all()
    assert data.train.images.shape == (0, 28, 28) and data.train.labels.shape == (0,)
    assert attrs["splits"]["train"]["rows"] == len(images.train.labels)
