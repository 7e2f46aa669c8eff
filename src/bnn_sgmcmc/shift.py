"""Shifted test sets, made in the workflow from the test split: rotations and additive noise.

Each set holds the same test examples (the first ``examples`` of the split)
under one shift: rotated by an angle about the image centre (bilinear, zeros
outside, as MNIST's background), or with Gaussian noise of a given standard
deviation added to the [0, 1] pixel values and clipped back into [0, 1]. A
rotation of 0 degrees or noise of 0 returns the images unchanged, which is the
in-distribution reference of every shift curve.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The predictive file's group of the shifted sets: a set is named ``shift/{kind}_{level}``.
GROUP = "shift"
#: The kinds of shift, in the order of the shift table and figure.
ROTATION = "rotation"
NOISE = "noise"
KINDS = (ROTATION, NOISE)


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    """[n, H, W] float images rotated counter-clockwise by ``degrees`` about their centres."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"images must be [n, H, W], got shape {x.shape}")
    if degrees % 360 == 0:
        return x.copy()
    from scipy.ndimage import rotate as nd_rotate

    return nd_rotate(x, degrees, axes=(2, 1), reshape=False, order=1, mode="constant", cval=0.0)


def add_noise(images: np.ndarray, std: float, seed: int) -> np.ndarray:
    """Images (values in [0, 1]) plus N(0, std^2) noise, clipped to [0, 1]; the same ``seed`` gives the same noise."""
    x = np.asarray(images, dtype=np.float32)
    if std == 0:
        return x.copy()
    if std < 0:
        raise ValueError(f"noise std must be non-negative, got {std}")
    rng = np.random.default_rng([seed, zlib.crc32(f"noise {std:g}".encode())])
    return np.clip(x + rng.normal(0.0, std, x.shape).astype(np.float32), 0.0, 1.0)


def set_name(kind: str, level: float) -> str:
    """The evaluation set's name, also its group in the predictive file: ``shift/rotation_90``, ``shift/noise_0.5``."""
    return f"{GROUP}/{kind}_{level:g}"


def parse_name(name: str) -> tuple[str, float]:
    """``shift/rotation_90`` -> ``("rotation", 90.0)``."""
    kind, level = name.removeprefix(f"{GROUP}/").rsplit("_", 1)
    return kind, float(level)


def shifted_sets(images: np.ndarray, config: Mapping[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Shifted copies of the first ``config['examples']`` of ``images`` [n, H, W] in [0, 1], by name."""
    x = np.asarray(images, dtype=np.float32)[: int(config["examples"])]
    sets: dict[str, np.ndarray] = {}
    for degrees in config["rotations"]:
        sets[set_name(ROTATION, float(degrees))] = rotate(x, float(degrees))
    for std in config["noise"]:
        sets[set_name(NOISE, float(std))] = add_noise(x, float(std), seed)
    return sets


def levels(names: Sequence[str], kind: str) -> list[tuple[float, str]]:
    """The ``(level, name)`` pairs of one kind of shift, in increasing level.

    Without a level 0 of its own, a kind borrows another kind's level 0 (the
    unshifted images are the same), so that no set is evaluated twice.
    """
    parsed = [(*parse_name(n), n) for n in names if n.startswith(f"{GROUP}/")]
    found = sorted((level, n) for k, level, n in parsed if k == kind)
    if found and found[0][0] != 0:
        found[:0] = [(0.0, n) for _, level, n in parsed if level == 0][:1]
    return found
