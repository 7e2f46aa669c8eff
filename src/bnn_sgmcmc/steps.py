"""The workflow's jobs, one function per rule: read inputs, compute, write outputs.

Scripts in ``scripts/`` are thin wrappers that pass the ``snakemake`` object's
fields to these functions, which keeps every rule callable from Python and tests.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bnn_sgmcmc import data as data_mod
from bnn_sgmcmc import h5io, provenance

log = logging.getLogger(__name__)


def download(*, data_config: dict[str, Any], seed: int, dataset: str, raw: str, record: str) -> None:
    """Fetch ``dataset`` from ``data_config['source']``; write raw arrays and a provenance record."""
    start = time.perf_counter()
    log.info("dataset %s: loading from %s", dataset, data_config["source"])
    images, details = data_mod.load_source(data_config, seed)
    for split, summary in details["splits"].items():
        log.info("%s: %d rows, class counts %s", split, summary["rows"], summary["class_counts"])
    if "published_mnist" in details:
        log.info(
            "the IDX files %s the published MNIST MD5 sums",
            "match" if details["published_mnist"] else "do not all match",
        )
    h5io.write_raw(raw, images)
    h5io.write_json(
        record,
        provenance.record(
            dataset=dataset,
            seed=seed,
            data_config=data_config,
            seconds=round(time.perf_counter() - start, 3),
            **details,
        ),
    )
    log.info("wrote %s and %s in %.1f s", raw, record, time.perf_counter() - start)


def preprocess(*, raw: str, record: str, data_config: dict[str, Any], seed: int, dataset: str, h5: str) -> None:
    """Validate the raw arrays and write the data HDF5 file (docs/schema.md)."""
    start = time.perf_counter()
    images = h5io.read_raw(raw)
    num_classes = int(data_config["num_classes"])
    image_shape = tuple(data_config["image_shape"])
    data_mod.validate(images, image_shape, num_classes, where=raw)  # type: ignore[arg-type]
    images = data_mod.as_uint8_labels(images)
    fetched = h5io.read_json(record)
    summary = data_mod.summarise(images, num_classes)
    h5io.write_data_h5(
        h5,
        images,
        num_classes=num_classes,
        attrs=provenance.record(
            dataset=dataset,
            source=data_config["source"],
            source_form=fetched["form"],
            seed=seed,
            data_config=data_config,
            source_files=fetched["files"],
            fetched=fetched["created"],
            seconds=round(time.perf_counter() - start, 3),
        ),
        split_attrs={
            split: {k: v for k, v in s.items() if k != "rows"} for split, s in summary.items()
        },
    )
    log.info("wrote %s: train %s, test %s", h5, images.train.images.shape, images.test.images.shape)
