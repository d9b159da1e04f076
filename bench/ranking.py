"""Ranking fidelity of the supernet: inherited-weight accuracy against training each architecture alone.

    python bench/ranking.py --data npz:../shared/data/cifar10_12k.npz [--space psvit_ext]
        [--strategy sandwich|uniform|stratified] [--path-dist choice|legal] [--supernet-epochs 8]
        [--archs 12] [--standalone-epochs 4] [--train-subset 4000] [--seed 0] [--threads 2]
        [--out results/ranking-<time>] [--reuse-standalone results/ranking-<earlier>]

A supernet is trained at the proxy scale (nas.train.Trainer) on a seeded subset of the training split
(the validation split stays whole). `--archs` architectures are then chosen stratified over MACs:
`--pool` samples of the space (drawn choice by choice, as the search proposes), their MAC range cut
into equal-width bins, one architecture per bin drawn with the seed (where a bin is empty, the
unchosen sample nearest its centre). Each is scored twice on the validation split, never test:

- inherited: its supernet path, BatchNorm recalibrated on 20 training batches (nas.evaluate);
- standalone: an ArchNet trained from scratch (seeded per architecture) with one recipe for all: the
  same epochs, batch, training loader and augmentation as the supernet, AdamW (lr 5e-4, wd 0.05),
  cosine schedule with one warm-up epoch, label smoothing 0.1, gradient clipping at 1.0.

Kendall tau and Spearman rho between the two, with bootstrap 90% intervals over the architectures
(2,000 resamples, percentiles 5 and 95, degenerate resamples skipped), are the last line printed;
<out>/ranking.csv (one row per architecture) and <out>/ranking.json (figures and settings) are written,
the supernet run goes to <out>/supernet. Kendall tau of MACs against standalone accuracy is reported
alongside as the baseline a supernet has to beat.

To compare supernet strategies cheaply, `--reuse-standalone <earlier run>` takes the standalone
accuracies of an earlier run whose data, architectures and recipe are the same (checked), so only the
supernet is trained again.

Time with the defaults on 2 CPU cores (cifar10_12k: 4,000 of 9,000 training images, 125 steps per
epoch at batch 32, 1,000 validation images): supernet 8 epochs x ~100 s (sandwich step 0.65-0.75 s, plus
~7 s evaluation) ~ 13 min; standalone 12 archs x 4 epochs x ~42 s (step 0.3-0.38 s) ~ 34 min; inherited
and standalone evaluation ~6 s per arch ~ 1 min; about 48-52 min in all.
"""
from __future__ import annotations

import json
import random
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from tqdm import tqdm

from nas.cli import Parser, run_cli

from nas.errors import UserError
from nas.measure.costs import arch_costs
from nas.data import load_data, make_loader
from nas.measure.evaluate import evaluate
from nas.training.sampling import DISTRIBUTIONS, STRATEGIES
from nas.training.supernet_trainer import TrainConfig, Trainer
from search_spaces import get_space
from supernet import ArchNet


def build_parser() -> Parser:
    p = Parser(prog="python bench/ranking.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="npz:PATH (e.g. npz:../shared/data/cifar10_12k.npz), digits, ...")
    p.add_argument("--space", default="psvit_ext")
    p.add_argument("--strategy", default="sandwich", choices=STRATEGIES)
    p.add_argument("--path-dist", default="choice", choices=DISTRIBUTIONS, help="supernet training: random paths by choice or legal-uniform")
    p.add_argument("--supernet-epochs", type=int, default=8)
    p.add_argument("--archs", type=int, default=12, help="architectures ranked (MAC bins)")
    p.add_argument("--pool", type=int, default=2000, help="samples the architectures are chosen from")
    p.add_argument("--standalone-epochs", type=int, default=4)
    p.add_argument("--train-subset", type=int, default=4000, help="training images used (0: all)")
    p.add_argument("--batch-size", type=int, default=32, help="supernet and standalone")
    p.add_argument("--lr", type=float, default=5e-4, help="supernet and standalone")
    p.add_argument("--calib-batches", type=int, default=20, help="BN recalibration batches for inherited accuracy")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    p.add_argument("--out", default="", help="default results/ranking-<time>")
    p.add_argument("--reuse-standalone", default="", metavar="RUN",
                   help="an earlier ranking run folder: standalone accuracies of the same architectures, data and recipe are reused")
    return p


def pick_archs(space, scale, n: int, pool: int, seed: int) -> list:
    """`n` architectures, one per equal-width MAC bin over `pool` samples, smallest first."""
    rng = random.Random(seed)
    archs = list({a.key(): a for a in (space.sample_by_choice(rng) for _ in range(pool))}.values())
    df = pd.DataFrame({"arch": archs, "macs": [arch_costs(a, scale).macs for a in archs]})
    df["bin"], edges = pd.cut(df.macs, n, labels=False, retbins=True)
    picked = df.groupby("bin").sample(1, random_state=seed)
    for b in sorted(set(range(n)) - set(picked["bin"])):
        rest = df.drop(picked.index)
        picked = pd.concat([picked, rest.loc[[(rest.macs - (edges[b] + edges[b + 1]) / 2).abs().idxmin()]]])
    return picked.sort_values("macs")["arch"].tolist()


@torch.no_grad()
def top1(model, loader, device) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += (model(x.to(device)).argmax(dim=1).cpu() == y).sum().item()
        total += len(y)
    return correct / max(total, 1)


def train_standalone(arch, trainer: Trainer, args, index: int) -> float:
    """Validation top-1 of `arch` trained from scratch with the fixed recipe."""
    torch.manual_seed(args.seed * 1000 + index)
    device, epochs = trainer.device, args.standalone_epochs
    model = ArchNet(arch, trainer.scale).to(device)
    loader = make_loader(trainer.bundle, "train", args.batch_size, seed=args.seed)
    optimizer = create_optimizer_v2(model, "adamw", lr=args.lr, weight_decay=0.05)
    scheduler, _ = create_scheduler_v2(
        optimizer, "cosine", num_epochs=epochs, warmup_epochs=1, min_lr=1e-5, warmup_lr=args.lr * 0.01,
        updates_per_epoch=len(loader), step_on_epochs=False,
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    for epoch in range(epochs):
        model.train()
        loader.set_epoch(epoch)
        t0, loss_sum = time.time(), 0.0
        bar = tqdm(loader, desc=f"arch {index + 1} epoch {epoch + 1}/{epochs}", mininterval=1.0, leave=False, dynamic_ncols=True)
        for step, (x, y) in enumerate(bar):
            loss = loss_fn(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step_update(epoch * len(loader) + step + 1)
            loss_sum += loss.item()
        bar.close()
        print(f"  arch {index + 1} epoch {epoch + 1}/{epochs}: loss {loss_sum / len(loader):.3f} ({time.time() - t0:.0f}s)", flush=True)
    return top1(model, trainer.val_loader, device)


def correlation(stat, a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> tuple[float, float, float]:
    """`stat`'s statistic of (a, b) and its bootstrap 90% interval over the pairs."""
    idx = np.random.default_rng(seed).integers(0, len(a), (resamples, len(a)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        value = stat(a, b).statistic
        boot = np.array([stat(a[i], b[i]).statistic for i in idx])
    boot = boot[np.isfinite(boot)]
    lo, hi = np.percentile(boot, [5, 95]) if len(boot) else (np.nan, np.nan)
    return float(value), float(lo), float(hi)


RECIPE = ("data", "space", "archs", "pool", "standalone_epochs", "train_subset", "batch_size", "lr", "seed")


def reusable_standalone(args) -> dict[tuple[int, str], float]:
    """Standalone accuracies by (index, arch JSON) from an earlier run with the same data, architectures and recipe."""
    if not args.reuse_standalone:
        return {}
    run = Path(args.reuse_standalone)
    try:
        earlier = json.loads((run / "ranking.json").read_text())["settings"]
        rows = pd.read_csv(run / "ranking.csv")
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"--reuse-standalone {run}: not a finished ranking run ({type(e).__name__})") from None
    differ = [k for k in RECIPE if earlier.get(k) != vars(args)[k]]
    if differ:
        raise UserError(f"--reuse-standalone {run}: its {', '.join(differ)} differ from this run's; standalone accuracies would not compare")
    return {(int(r["index"]), r["arch"]): float(r["standalone_acc"]) for _, r in rows.iterrows()}


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.archs < 3 or args.standalone_epochs < 1:
        raise UserError("--archs must be at least 3 and --standalone-epochs at least 1")
    t_start = time.time()
    torch.set_num_threads(args.threads)
    out = Path(args.out or f"results/ranking-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "supernet").exists():
        raise UserError(f"{out / 'supernet'} already exists; choose another --out")
    space = get_space(args.space)
    bundle = load_data(args.data, img_size=None if args.data.startswith("npz:") else space.proxy.img_size, seed=args.seed)
    if 0 < args.train_subset < len(bundle.train):
        index = torch.randperm(len(bundle.train), generator=torch.Generator().manual_seed(args.seed))[:args.train_subset]
        bundle = replace(bundle, train=bundle.train.subset(index))
    print(f"data {bundle.name}: {len(bundle.train)} train, {len(bundle.val)} val images, {bundle.img_size}x{bundle.img_size}", flush=True)

    trainer = Trainer(TrainConfig(
        space=args.space, data=args.data, scale="proxy", epochs=args.supernet_epochs, batch_size=args.batch_size, lr=args.lr,
        strategy=args.strategy, path_dist=args.path_dist, seed=args.seed, out=str(out / "supernet"), device=args.device,
        threads=args.threads,
    ), bundle=bundle)
    summary = trainer.run()
    t_supernet = time.time() - t_start
    print(f"supernet: {args.supernet_epochs} epochs in {t_supernet / 60:.1f} min", flush=True)

    archs = pick_archs(space, trainer.scale, args.archs, args.pool, args.seed)
    reused = reusable_standalone(args)
    rows = []
    for i, arch in enumerate(archs):
        t0 = time.time()
        costs = arch_costs(arch, trainer.scale)
        inherited = evaluate(trainer.net, arch, trainer.val_loader, trainer.calib_loader, calib_batches=args.calib_batches)
        standalone = reused.get((i, arch.to_json()))
        if standalone is None:
            standalone = train_standalone(arch, trainer, args, i)
        rows.append({"index": i, "macs": costs.macs, "params": costs.params, "inherited_acc": inherited,
                     "standalone_acc": standalone, "seconds": time.time() - t0, "arch": arch.to_json()})
        print(f"arch {i + 1}/{len(archs)}: {costs.macs / 1e6:.1f}M MACs, inherited {inherited:.3f}, standalone {standalone:.3f} "
              f"({rows[-1]['seconds']:.0f}s)", flush=True)
        pd.DataFrame(rows).to_csv(out / "ranking.csv", index=False)

    df = pd.DataFrame(rows)
    inh, sta, macs = (df[k].to_numpy(float) for k in ("inherited_acc", "standalone_acc", "macs"))
    tau = correlation(stats.kendalltau, inh, sta, args.bootstrap, args.seed)
    rho = correlation(stats.spearmanr, inh, sta, args.bootstrap, args.seed)
    macs_tau = correlation(stats.kendalltau, macs, sta, args.bootstrap, args.seed)
    minutes = (time.time() - t_start) / 60
    result = {
        "n": len(df), "kendall_tau": tau[0], "kendall_tau_ci90": tau[1:], "spearman_rho": rho[0], "spearman_rho_ci90": rho[1:],
        "macs_kendall_tau": macs_tau[0], "macs_kendall_tau_ci90": macs_tau[1:],
        "wall_time_min": minutes, "supernet_time_min": t_supernet / 60, "settings": vars(args), "data": bundle.describe(),
        "scale": trainer.scale.to_dict(), "supernet": summary, "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    (out / "ranking.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"baseline: MACs vs standalone kendall_tau={macs_tau[0]:.3f} [{macs_tau[1]:.3f}, {macs_tau[2]:.3f}]; results in {out}")
    print(f"n={len(df)} kendall_tau={tau[0]:.3f} [{tau[1]:.3f}, {tau[2]:.3f}] spearman_rho={rho[0]:.3f} [{rho[1]:.3f}, {rho[2]:.3f}] "
          f"(strategy {args.strategy}, paths {args.path_dist}, supernet {args.supernet_epochs} epochs, standalone {args.standalone_epochs} epochs, {minutes:.0f} min)",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
