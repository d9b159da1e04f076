"""What the search benchmarks share: their output folder and the supernet they search."""
from __future__ import annotations

import time
from pathlib import Path

from nas.errors import UserError
from nas.runs import SearchSettings
from nas.search import check_reachable
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
