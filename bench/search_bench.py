"""What the search benchmarks share: their output folder, the supernet they search, a smaller data set."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from nas.errors import UserError
from nas.runs import SearchSettings
from nas.searching.limits import check_reachable
from nas.training.supernet_trainer import TrainConfig, Trainer


def prepare(args, space, flops: float, name: str, epochs: int) -> tuple[Path, str]:
    """(a new empty output folder, the supernet checkpoint): args.supernet, or one trained for `epochs` into <out>/supernet."""
    if args.supernet and not Path(args.supernet).is_file():
        raise UserError(f"--supernet {args.supernet}: file does not exist")
    check_reachable(SearchSettings(space=space.name, flops=flops))
    out = Path(args.out or f"results/{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out} already exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    if args.supernet:
        return out, args.supernet
    Trainer(TrainConfig(space=space.name, data=args.data, epochs=epochs, out=str(out / "supernet"))).run()
    return out, str(out / "supernet" / "supernet.pt")


def subset_npz(spec: str, n: int, seed: int, out: Path) -> str:
    """The npz with a seeded subset of `n` training images (all of them if n is 0 or more than there are)."""
    if not spec.startswith("npz:"):
        raise UserError(f"--data {spec!r}: the benchmark takes npz:PATH")
    arrays = dict(np.load(spec[4:], allow_pickle=False))
    if 0 < n < len(arrays["x_train"]):
        keep = np.sort(np.random.default_rng(seed).permutation(len(arrays["x_train"]))[:n])
        arrays["x_train"], arrays["y_train"] = arrays["x_train"][keep], arrays["y_train"][keep]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return f"npz:{out}"
