"""RandAugment for the data sets of nas.data: timm's transform, its spec checked before a run starts, applied per
image through PIL for in-memory sets and inside timm's create_transform for folders."""
from __future__ import annotations

import re

import numpy as np
import torch

from nas.errors import UserError

_RAND_AUGMENT_SECTION = re.compile(r"(m\d+(\.\d+)?|n\d+|mstd\d+(\.\d+)?|mmax\d+|inc[01]|p(\d+(\.\d*)?|\.\d+)|t\w+)")


def check_auto_augment(spec: str) -> None:
    """timm's RandAugment parser skips sections it cannot read (rand-zzz is plain RandAugment to it): refuse them."""
    try:
        if not spec.startswith("rand-") and spec != "rand":
            raise ValueError("not a RandAugment spec")
        bad = [c for c in spec.split("-")[1:] if not _RAND_AUGMENT_SECTION.fullmatch(c)]
        if bad:
            raise ValueError(f"section {bad[0]!r} is not one of mN, nN, mstdX, mmaxN, inc0/1, pX")
        rand_augment(spec, 32, (0.5, 0.5, 0.5))
    except (ValueError, AssertionError, KeyError) as e:
        raise UserError(f"--aa {spec!r}: {e or 'not understood'}; expected a timm RandAugment spec such as rand-m9-mstd0.5-inc1") from None


def rand_augment(spec: str, img_size: int, mean):
    """timm's RandAugment (PIL), with the hyper-parameters timm's create_transform gives it.

    The magnitude is capped just below timm's maximum of 10: at exactly 10, timm's increasing posterize
    keeps 0 bits, which Pillow >= 11 refuses (ValueError mid-epoch); any magnitude below 10 keeps >= 1 bit.
    """
    from timm.data.auto_augment import rand_augment_transform

    hparams = {"translate_const": int(img_size * 0.45), "img_mean": tuple(min(255, round(255 * m)) for m in mean),
               "magnitude_max": 9.999}
    return rand_augment_transform(spec, hparams)


def train_transform(size: int, auto_augment: str | None):
    """timm's training transform; with RandAugment in place of colour jitter, as timm's own does."""
    from timm.data import create_transform
    from timm.data.constants import IMAGENET_DEFAULT_MEAN
    from torchvision import transforms

    if not auto_augment:
        return create_transform(size, is_training=True)
    primary, _, final = create_transform(size, is_training=True, separate=True)
    return transforms.Compose([primary, rand_augment(auto_augment, size, IMAGENET_DEFAULT_MEAN), final])


def rand_augment_tensor(spec: str, img_size: int, mean):
    """RandAugment on one uint8 (3, H, W) tensor, through PIL."""
    from PIL import Image

    transform = rand_augment(spec, img_size, mean)

    def apply(image: torch.Tensor) -> torch.Tensor:
        out = transform(Image.fromarray(image.permute(1, 2, 0).numpy()))
        return torch.from_numpy(np.asarray(out, dtype=np.uint8).copy()).permute(2, 0, 1)

    return apply
