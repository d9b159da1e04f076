"""Checks of a data set given by --data, each failing with one line that names the file or split and what is
allowed: in-memory arrays, image files, and the size of the training split against the batch."""
from __future__ import annotations

import numpy as np

from nas.errors import UserError

MAX_CLASSES = 100_000  # a label is a class index; ImageNet-21k has 21,841 classes


def check_arrays(where: str, x: np.ndarray, y: np.ndarray, split: str) -> None:
    """Images (N, H, W[, C]) uint8 with C 1 or 3, N > 0, and as many integer labels >= 0."""
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise UserError(f"{where}: x_{split} must be uint8 images (N, H, W) or (N, H, W, C) with C 1 or 3; got {x.dtype} {x.shape}")
    if len(x) == 0:
        raise UserError(f"{where}: x_{split} holds no images; each split needs at least one")
    if min(x.shape[1:3]) < 1:
        raise UserError(f"{where}: x_{split} images are {x.shape[1]}x{x.shape[2]} pixels; they must be at least 1x1")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where}: y_{split} must be a 1-D array of integer class labels; got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise UserError(f"{where}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
    if y.min() < 0:
        raise UserError(f"{where}: y_{split} holds the label {int(y.min())}; labels must be class indices 0, 1, 2, ...")
    if y.max() >= MAX_CLASSES:
        raise UserError(f"{where}: y_{split} holds the label {int(y.max())}; labels must be class indices 0 to {MAX_CLASSES - 1} "
                        f"(at most {MAX_CLASSES:,} classes)")


def check_images(where: str, files: list[str]) -> None:
    """Every image file opens as an image (its header read, not its pixels: about 0.1 ms a file); the first that
    does not is named. A progress bar for large folders."""
    from PIL import Image, UnidentifiedImageError
    from tqdm import tqdm

    for f in tqdm(files, desc="checking images", unit="img", disable=len(files) < 20_000, mininterval=2.0, leave=False):
        try:
            with Image.open(f) as image:
                image.size  # noqa: B018 (the header is parsed)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            reason = "not an image PIL can read" if isinstance(e, UnidentifiedImageError) else (str(e).splitlines() or [type(e).__name__])[0][:80]
            raise UserError(f"{where}: {f} cannot be read ({reason}); remove or replace it") from None


def check_split_sizes(n: int, val_fraction: float, batch_size: int | None, where: str) -> None:
    """The seeded split of n training images must leave a whole training batch and at least one validation image."""
    held = max(1, int(round(n * val_fraction)))
    need = batch_size or 2
    if n - held < need:
        what = f"a training batch of {batch_size}" if batch_size else "2"
        raise UserError(f"--val-fraction {val_fraction:g}: {where} has {n} training images and holds out {held}, which leaves "
                        f"{n - held}, fewer than {what}; lower --val-fraction (the rest must hold at least {need} images)")
