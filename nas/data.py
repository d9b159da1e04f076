"""Data sets for supernet training, search and retraining, chosen by a --data spec.

- ``digits`` (default): scikit-learn's handwritten digits (1,797 8x8 images, shipped inside the
  package, no download), upsampled to the scale's input size and repeated to 3 channels;
- ``npz:PATH``: arrays x_train, y_train, x_test, y_test (uint8 HWC images, integer labels);
- ``folder:PATH``: an ImageFolder tree with train/ and val/ (or test/) class subfolders;
- ``timm:NAME`` / ``torch/NAME`` etc.: any data set timm's create_dataset knows, downloaded if a
  network is there.

The training images are split, with a seed, into train and validation; search and evaluation use
validation, never test. In-memory data sets (digits, npz) are served by a batch loader that augments
whole batches on the tensor (random crop with padding, horizontal flip where it keeps labels), which
on a CPU is many times faster than per-image PIL transforms; image folders and named data sets use
timm's transforms and loaders. RandAugment (`auto_augment`, timm's spec such as rand-m9-mstd0.5-inc1)
is timm's: in create_transform for folders, per image (PIL) inside the batch loader for in-memory sets.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas.augmentation import check_auto_augment, rand_augment_tensor, train_transform
from nas.data_checks import check_arrays, check_images, check_split_sizes
from nas.errors import UserError

_NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class ArrayData:
    """Uint8 images (N, 3, H, W) with integer labels, held in memory."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "ArrayData":
        return ArrayData(self.images[index], self.labels[index])


@dataclass
class DataBundle:
    name: str
    train: object
    val: object
    test: object | None
    num_classes: int
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    flip: bool = True
    info: dict = field(default_factory=dict)
    auto_augment: str | None = None
    train_eval: object | None = None  # the training split under the evaluation transform (folders, named sets); arrays need none

    def describe(self) -> dict:
        return {
            "name": self.name, "num_classes": self.num_classes, "img_size": self.img_size,
            "train": len(self.train), "val": len(self.val), "test": len(self.test) if self.test is not None else 0,
            "mean": list(self.mean), "std": list(self.std),
            **{k: self.info[k] for k in ("split_seed", "val_fraction") if k in self.info},
        }


def _split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, held-out) index split; the held-out part has round(n * fraction) items."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(1, int(round(n * fraction)))
    return perm[k:], perm[:k]


def _to_nchw(images: np.ndarray, img_size: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    x = x.permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = F.interpolate(x.float(), size=(img_size, img_size), mode="bilinear", align_corners=False)
        x = x.round().clamp(0, 255)
    return x.to(torch.uint8).contiguous()


def _stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.float() / 255
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())


def _array_bundle(name, x_train, y_train, x_test, y_test, img_size, seed, val_fraction, flip, batch_size=None) -> DataBundle:
    check_split_sizes(len(x_train), val_fraction, batch_size, name)
    train_all = ArrayData(_to_nchw(x_train, img_size), torch.as_tensor(np.asarray(y_train), dtype=torch.long))
    test = ArrayData(_to_nchw(x_test, img_size), torch.as_tensor(np.asarray(y_test), dtype=torch.long))
    tr, va = _split(len(train_all), val_fraction, seed)
    train, val = train_all.subset(tr), train_all.subset(va)
    num_classes = int(max(train_all.labels.max(), test.labels.max())) + 1
    mean, std = _stats(train.images)
    return DataBundle(name, train, val, test, num_classes, img_size, mean, std, flip=flip)


def _digits(img_size: int, seed: int, val_fraction: float, batch_size: int | None = None) -> DataBundle:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
    rest, test = _split(len(images), 0.2, seed=12345)  # fixed test split, independent of the run's seed
    rest, test = rest.numpy(), test.numpy()
    return _array_bundle("digits", images[rest], d.target[rest], images[test], d.target[test], img_size, seed, val_fraction, flip=False,
                         batch_size=batch_size)


def _npz(path: str, img_size: int | None, seed: int, val_fraction: float, batch_size: int | None = None) -> DataBundle:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--data npz:{path}: file does not exist")
    try:
        arrays = np.load(p, allow_pickle=False)
        missing = [k for k in _NPZ_ARRAYS if k not in arrays.files]
    except Exception as e:  # not a zip / not an npz
        raise UserError(f"--data npz:{path}: not a readable .npz file ({e})") from None
    if missing:
        raise UserError(f"--data npz:{path}: missing array(s) {', '.join(missing)}; required: {', '.join(_NPZ_ARRAYS)}")
    try:
        x_train, y_train, x_test, y_test = (arrays[k] for k in _NPZ_ARRAYS)
    except Exception as e:  # object arrays (pickles are never loaded), a damaged member
        raise UserError(f"--data npz:{path}: cannot read its arrays ({str(e).splitlines()[0][:100]}); "
                        "they must be plain uint8 images and integer labels") from None
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        check_arrays(f"--data npz:{path}", x, y, split)
    if len(x_train) < 2:
        raise UserError(f"--data npz:{path}: x_train has {len(x_train)} image(s); at least 2 are needed to split off a validation set")
    if len(np.unique(y_train)) < 2:
        raise UserError(f"--data npz:{path}: y_train holds one class ({int(y_train[0])}); a classifier needs at least 2 classes")
    size = img_size or int(x_train.shape[1])
    return _array_bundle(p.stem, x_train, y_train, x_test, y_test, size, seed, val_fraction, flip=True, batch_size=batch_size)


def _folder(path: str, img_size: int | None, seed: int, val_fraction: float, auto_augment: str | None = None,
            batch_size: int | None = None) -> DataBundle:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_dataset, create_transform

    root = Path(path)
    if not root.is_dir():
        raise UserError(f"--data folder:{path}: directory does not exist")
    train_dir = root / "train"
    val_dir = next((root / d for d in ("val", "validation", "test") if (root / d).is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        raise UserError(f"--data folder:{path}: needs train/ and val/ (or test/) subfolders with one folder per class")
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if not classes:
        raise UserError(f"--data folder:{path}: train/ has no class subfolders")
    if len(classes) < 2:
        raise UserError(f"--data folder:{path}: train/ has one class folder ({classes[0]}); a classifier needs at least 2")
    size = img_size or 224
    train_tf = train_transform(size, auto_augment)
    eval_tf = create_transform(size, is_training=False)
    try:
        train_all = create_dataset("", root=str(train_dir), transform=train_tf)
        eval_all = create_dataset("", root=str(train_dir), transform=eval_tf)
        test = create_dataset("", root=str(val_dir), transform=eval_tf)
    except RuntimeError as e:  # timm: "Found 0 images in subfolders of ..."
        raise UserError(f"--data folder:{path}: {str(e).splitlines()[0][:160]}") from None
    for split, data in (("train", train_all), (val_dir.name, test)):
        if len(data) < (2 if split == "train" else 1):
            raise UserError(f"--data folder:{path}: {split}/ holds {len(data)} image(s); its class folders need images "
                            "(.jpg, .png, ...), and train/ at least 2")
        check_images(f"--data folder:{path}", [p for p, _ in data.reader.samples])
    check_split_sizes(len(train_all), val_fraction, batch_size, f"folder:{path}")
    tr, va = _split(len(train_all), val_fraction, seed)
    train = torch.utils.data.Subset(train_all, tr.tolist())
    val = torch.utils.data.Subset(eval_all, va.tolist())
    return DataBundle(root.name, train, val, test, len(classes), size, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD,
                      train_eval=torch.utils.data.Subset(eval_all, tr.tolist()))


def _named(name: str, img_size: int | None, seed: int, val_fraction: float, auto_augment: str | None = None,
           batch_size: int | None = None) -> DataBundle:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_dataset, create_transform

    size = img_size or 224
    root = Path.home() / ".cache" / "psvit-nas" / "data"
    try:
        train_all = create_dataset(name, root=str(root), split="train", download=True,
                                   transform=train_transform(size, auto_augment))
        eval_all = create_dataset(name, root=str(root), split="train", download=True, transform=create_transform(size, is_training=False))
        test = create_dataset(name, root=str(root), split="validation", download=True, transform=create_transform(size, is_training=False))
    except Exception as e:
        raise UserError(f"--data {name}: could not load this data set ({type(e).__name__}: {str(e)[:120]}); "
                        "allowed: digits, npz:PATH, folder:PATH, or a timm/torchvision data set name that can download") from None
    check_split_sizes(len(train_all), val_fraction, batch_size, name)
    tr, va = _split(len(train_all), val_fraction, seed)
    classes = getattr(train_all, "classes", None) or getattr(getattr(train_all, "reader", None), "class_to_idx", None)
    num_classes = len(classes) if classes else int(max(int(train_all[i][1]) for i in range(min(len(train_all), 5000)))) + 1
    return DataBundle(name, torch.utils.data.Subset(train_all, tr.tolist()), torch.utils.data.Subset(eval_all, va.tolist()), test,
                      num_classes, size, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, train_eval=torch.utils.data.Subset(eval_all, tr.tolist()))


def load_data(spec: str | None = None, img_size: int | None = None, seed: int = 0, val_fraction: float = 0.1,
              auto_augment: str | None = None, batch_size: int | None = None) -> DataBundle:
    """The data set named by `spec` at `img_size` (None: the data's own size; digits: 32); `auto_augment`
    (a timm RandAugment spec) applies to the training split. `batch_size`: the training split must hold one
    whole batch of it (checked before anything is computed from the split)."""
    if auto_augment:
        check_auto_augment(auto_augment)
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    bundle = _load(spec or "digits", img_size, seed, val_fraction, auto_augment, batch_size)
    bundle.auto_augment = auto_augment
    bundle.info.update(split_seed=seed, val_fraction=val_fraction)
    return bundle


def same_data(spec_a: str, spec_b: str) -> bool:
    """Whether two --data specs name the same images: the same spec, or two npz files holding equal arrays
    (the benchmarks write one subset per output folder; equal content is the same data wherever it lies)."""
    if spec_a == spec_b:
        return True
    if not (spec_a.startswith("npz:") and spec_b.startswith("npz:")):
        return False
    try:
        with np.load(spec_a[4:], allow_pickle=False) as a, np.load(spec_b[4:], allow_pickle=False) as b:
            return sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in _NPZ_ARRAYS)
    except (OSError, ValueError, KeyError):
        return False


_DATASET_NAME = re.compile(r"([A-Za-z][\w-]*/)?[A-Za-z][\w.-]*")  # timm's create_dataset names: cifar10, torch/cifar10, hfds/x


def _load(spec: str, img_size: int | None, seed: int, val_fraction: float, auto_augment: str | None,
          batch_size: int | None) -> DataBundle:
    if spec == "digits":
        return _digits(img_size or 32, seed, val_fraction, batch_size)
    if spec.startswith("npz:"):
        return _npz(spec[4:], img_size, seed, val_fraction, batch_size)
    if spec.startswith("folder:"):
        return _folder(spec[7:], img_size, seed, val_fraction, auto_augment, batch_size)
    if spec.startswith("timm:"):
        spec = spec[5:]
    if _DATASET_NAME.fullmatch(spec):
        return _named(spec, img_size, seed, val_fraction, auto_augment, batch_size)
    raise UserError(f"--data {spec!r}: not understood; allowed: digits, npz:PATH, folder:PATH, or a timm data set name")


class BatchLoader:
    """Batches of an in-memory ArrayData: shuffled per epoch with a seed, augmented on the whole batch
    (after `image_transform`, a per-image uint8 transform such as RandAugment, when given)."""

    def __init__(self, data: ArrayData, batch_size: int, mean, std, train: bool, seed: int = 0, flip: bool = True,
                 pad: int = 4, drop_last: bool | None = None, image_transform=None):
        self.data, self.batch_size, self.train, self.seed, self.flip, self.pad = data, batch_size, train, seed, flip, pad
        self.image_transform = image_transform
        self.mean = torch.tensor(mean).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std).view(1, 3, 1, 1) * 255
        self.drop_last = train if drop_last is None else drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last and n >= self.batch_size else math.ceil(n / self.batch_size)

    def _augment(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        B, C, H, W = x.shape
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
            dy = torch.randint(0, 2 * self.pad + 1, (B,), generator=g)
            dx = torch.randint(0, 2 * self.pad + 1, (B,), generator=g)
            rows = (dy[:, None] + torch.arange(H)[None]).view(B, 1, H, 1).expand(B, C, H, W + 2 * self.pad)
            x = x.gather(2, rows)
            cols = (dx[:, None] + torch.arange(W)[None]).view(B, 1, 1, W).expand(B, C, H, W)
            x = x.gather(3, cols)
        if self.flip:
            flip = torch.rand(B, generator=g) < 0.5
            x = torch.where(flip.view(B, 1, 1, 1), x.flip(3), x)
        return x

    def __iter__(self):
        n = len(self.data)
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(n, generator=g) if self.train else torch.arange(n)
        for k in range(len(self)):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size]
            x = self.data.images[idx]
            if self.train and self.image_transform is not None:
                x = torch.stack([self.image_transform(image) for image in x])
            x = x.float()
            if self.train:
                x = self._augment(x, g)
            yield (x - self.mean) / self.std, self.data.labels[idx]


def make_loader(bundle: DataBundle, split: str, batch_size: int, seed: int = 0, workers: int = 0, train: bool | None = None):
    """A loader over bundle.<split>; training loaders shuffle and augment."""
    data = getattr(bundle, split)
    train = (split == "train") if train is None else train
    if isinstance(data, ArrayData):
        augment = rand_augment_tensor(bundle.auto_augment, bundle.img_size, bundle.mean) if train and bundle.auto_augment else None
        return BatchLoader(data, batch_size, bundle.mean, bundle.std, train=train, seed=seed, flip=bundle.flip, image_transform=augment)
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=train, drop_last=train, num_workers=workers, generator=g)
