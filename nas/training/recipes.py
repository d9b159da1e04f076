"""The retrain settings: RetrainConfig and the timm recipe presets (quick, DeiT) it starts from."""
from __future__ import annotations

from dataclasses import dataclass, field

from nas.errors import UserError
from nas.training.base import check_common_settings

INITS = ("scratch", "supernet")

# The knobs of a recipe; explicit flags override the preset. lr None: lr_base x batch / 512 (DeiT's rule).
RECIPES = {
    "quick": dict(epochs=20, batch_size=64, lr=1e-3, lr_base=None, weight_decay=0.05, warmup_epochs=2, min_lr=1e-5,
                  smoothing=0.1, mixup=0.0, cutmix=0.0, aa=None, drop_path=0.0, model_ema=False, ema_decay=0.998,
                  clip_grad=1.0, amp=True),
    "deit": dict(epochs=300, batch_size=1024, lr=None, lr_base=5e-4, weight_decay=0.05, warmup_epochs=5, min_lr=1e-5,
                 smoothing=0.1, mixup=0.8, cutmix=1.0, aa="rand-m9-mstd0.5-inc1", drop_path=0.1, model_ema=True,
                 ema_decay=0.99996, clip_grad=None, amp=True),
}
RECIPE_KEYS = tuple(k for k in RECIPES["quick"] if k != "lr_base")
_QUICK = RECIPES["quick"]


@dataclass
class RetrainConfig:
    space: str
    arch: dict
    data: str = "digits"
    seed: int = 0
    split_seed: int | None = None  # seeds the train/validation split when it must differ from `seed` (None: seed)
    scale: str = "proxy"
    custom_scale: dict | None = None  # a Scale as a dict (the search run's supernet scale), overriding `scale`
    val_fraction: float = 0.1
    recipe: str = "quick"
    epochs: int = _QUICK["epochs"]
    batch_size: int = _QUICK["batch_size"]
    lr: float = _QUICK["lr"]
    weight_decay: float = _QUICK["weight_decay"]
    warmup_epochs: int = _QUICK["warmup_epochs"]
    min_lr: float = _QUICK["min_lr"]
    smoothing: float = _QUICK["smoothing"]
    mixup: float = _QUICK["mixup"]
    cutmix: float = _QUICK["cutmix"]
    aa: str | None = _QUICK["aa"]
    drop_path: float = _QUICK["drop_path"]
    model_ema: bool = _QUICK["model_ema"]
    ema_decay: float = _QUICK["ema_decay"]
    clip_grad: float | None = _QUICK["clip_grad"]
    amp: bool = _QUICK["amp"]
    init: str = "scratch"
    supernet: str | None = None
    calib_batches: int = 10  # with init supernet: BatchNorm recalibrated as the search's trials were (the run's setting)
    out: str = ""
    resume: bool = False
    device: str = "auto"
    threads: int = 0
    export: tuple[str, ...] = ()
    latency: bool = True
    space_file: str | None = None
    source: dict = field(default_factory=dict)  # where the arch came from: file, run, trial, inherited accuracy

    def check(self) -> None:
        if self.init not in INITS:
            raise UserError(f"--init {self.init!r} is not known; allowed: {', '.join(INITS)}")
        if self.init == "supernet" and not self.supernet:
            raise UserError("--init supernet needs a supernet checkpoint: give a run's best.json or pareto.csv, or --supernet PATH")
        check_common_settings(self)
        for name in ("smoothing", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if self.mixup < 0 or self.cutmix < 0:
            raise UserError(f"--mixup and --cutmix must be at least 0 (Beta-distribution alphas), got {self.mixup}, {self.cutmix}")
        if self.mixes and self.batch_size % 2:
            raise UserError(f"--batch-size {self.batch_size}: Mixup/CutMix pair images within a batch, so it must be even")
        if self.calib_batches < 0:
            raise UserError(f"calib_batches must be at least 0, got {self.calib_batches}")
        if self.model_ema and not 0.0 < self.ema_decay < 1.0:
            raise UserError(f"--ema-decay must be in (0, 1), got {self.ema_decay}")

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


def resolve_recipe(name: str, overrides: dict) -> dict:
    """The preset's knobs with the explicit ones (not None) in their place. The DeiT rule sets an lr the
    preset leaves open from the global batch size; a preset's warm-up is cut to a quarter of fewer epochs."""
    if name not in RECIPES:
        raise UserError(f"--recipe {name!r} is not known; allowed: {', '.join(RECIPES)}")
    explicit = {k: v for k, v in overrides.items() if v is not None}
    knobs = {**RECIPES[name], **explicit}
    if "warmup_epochs" not in explicit:
        knobs["warmup_epochs"] = min(knobs["warmup_epochs"], knobs["epochs"] // 4)
    lr_base = knobs.pop("lr_base")
    if knobs["lr"] is None:
        knobs["lr"] = lr_base * knobs["batch_size"] / 512
    return knobs
