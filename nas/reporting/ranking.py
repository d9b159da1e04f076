"""How well one score ranks architectures against another: rank correlations with bootstrap intervals,
and the seed-to-seed spread of a ground truth against the spread between architectures."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats


def correlation(statistic: str, a, b, resamples: int = 2000, seed: int = 0) -> dict:
    """Kendall tau ('kendall') or Spearman rho ('spearman') of (a, b), with a 90% bootstrap interval over the
    pairs (percentiles 5 and 95 of `resamples` resamples; resamples with a constant side are skipped)."""
    fn = {"kendall": stats.kendalltau, "spearman": stats.spearmanr}[statistic]
    a, b = np.asarray(a, float), np.asarray(b, float)
    idx = np.random.default_rng(seed).integers(0, len(a), (resamples, len(a)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        value = float(fn(a, b).statistic)
        boot = np.array([fn(a[i], b[i]).statistic for i in idx])
    boot = boot[np.isfinite(boot)]
    lo, hi = (float(v) for v in np.percentile(boot, [5, 95])) if len(boot) else (float("nan"), float("nan"))
    return {"value": value, "ci90": [lo, hi]}


def seed_spread(runs: pd.DataFrame) -> dict:
    """From standalone runs (columns arch_id, seed, standalone_acc): the seed-to-seed standard deviation
    (pooled over the architectures trained with more than one seed) against the standard deviation of the
    per-architecture means, and their ratio (small: the ground truth can rank the architectures)."""
    means = runs.groupby("arch_id")["standalone_acc"].mean()
    repeated = runs.groupby("arch_id").filter(lambda g: len(g) > 1)
    if repeated.empty:
        within = float("nan")
    else:
        dev = repeated.groupby("arch_id")["standalone_acc"].transform("mean")
        dof = len(repeated) - repeated["arch_id"].nunique()
        within = float(np.sqrt(((repeated["standalone_acc"] - dev) ** 2).sum() / dof))
    between = float(means.std(ddof=1)) if len(means) > 1 else float("nan")
    return {"seed_std": within, "between_arch_std": between, "ratio": within / between if between else float("nan"),
            "archs_with_seeds": int(repeated["arch_id"].nunique()), "runs_with_seeds": int(len(repeated))}


def tau_ceiling(noise_ratio: float) -> float:
    """The Kendall tau a perfect ranker is expected to reach against a noisy ground truth, from the ratio of the
    ground truth's noise (the std of its per-architecture value) to the std between architectures (which holds that
    noise too). With Gaussian true values and noise, the correlation of truth and measurement is
    sqrt(1 - ratio**2), and Kendall's tau of a bivariate normal is 2/pi * arcsin(that) (Greiner's relation).
    A supernet's tau well under 1 with a ceiling near it is the ground truth's limit, not the supernet's."""
    if not np.isfinite(noise_ratio):
        return float("nan")
    rho = np.sqrt(max(0.0, 1.0 - min(noise_ratio, 1.0) ** 2))
    return float(2 / np.pi * np.arcsin(rho))


def seeds_for_ceiling(seed_std: float, between_std: float, seeds: int, target: float) -> int | None:
    """Seeds per architecture at which a perfect ranker's expected tau (`tau_ceiling`) reaches `target`, from a ground
    truth measured with `seeds` seeds each: the true spread between architectures is what the measured spread holds
    beyond the noise of a mean of `seeds` (between_std**2 - seed_std**2 / seeds). None when none of it is left
    (the measured differences are all noise) or the spread is unmeasured."""
    true_var = between_std ** 2 - seed_std ** 2 / seeds
    if not (math.isfinite(true_var) and true_var > 0 and math.isfinite(seed_std)):
        return None
    r = math.sin(target * math.pi / 2)  # the correlation of truth and measurement that Greiner's relation turns into `target`
    # the fewest seeds whose noise variance seed_std**2 / n is at most true_var * (1/r**2 - 1); 1e-9 keeps an exact n from rounding up
    return max(1, math.ceil(seed_std ** 2 / (true_var * (1 / r ** 2 - 1)) - 1e-9))
