"""The retrainer: one searched architecture trained as a standalone timm model, from scratch or from
the weights it inherits from its supernet, then evaluated on the validation and test splits, measured
and optionally exported."""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict

import torch
from torch import nn

from search_spaces import Arch, get_space
from search_spaces.atomic import write_text_atomic
from supernet.calibration import has_batchnorm, recalibrated_model

from nas.data import DataBundle, load_data, make_loader
from nas.errors import UserError
from nas.measure.costs import arch_costs
from nas.measure.evaluate import calibration_loader, model_accuracy
from nas.measure.export import export_model
from nas.training.base import TrainerBase
from nas.training.checkpoint import RETRAIN_KIND, supernet_from_checkpoint
from nas.training.recipes import RECIPE_KEYS, RetrainConfig
from nas.training.supernet_trainer import data_img_size, resolve_scale

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
ARCH = "arch.json"


def inherited_weights(path: str, space_name: str, scale, arch: Arch, calib=None) -> dict:
    """The state dict of `arch`'s path in the supernet checkpoint at `path`, whose scale must be `scale`;
    BatchNorm recalibrated on the batches `calib` when given, as the search's evaluation does."""
    try:
        net, _ = supernet_from_checkpoint(path, space_name, scale)
    except UserError as e:
        raise UserError(f"--init supernet: {e}") from None
    return net.extract(arch, calib=calib).state_dict()


class Retrainer(TrainerBase):
    """One architecture trained from scratch (or from its supernet weights) with a timm recipe;
    `run()` trains to cfg.epochs, resuming from out/checkpoint.pt if asked, then evaluates and measures."""

    checkpoint_file, checkpoint_kind, label = CHECKPOINT, RETRAIN_KIND, "retrain"

    def __init__(self, cfg: RetrainConfig, bundle: DataBundle | None = None, log=print, on_epoch_end=None):
        import timm
        from timm.data import Mixup
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
        from timm.utils import ModelEmaV3, random_seed

        import supernet  # noqa: F401  (registers the spaces' timm models)

        from search_spaces import load_space_file

        t_start = time.time()
        load_space_file(cfg.space_file)
        self._setup(cfg, log, on_epoch_end)
        self.space = get_space(cfg.space)
        self.arch = self.space.validate(Arch.from_dict(cfg.arch))
        split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
        self.bundle = bundle or load_data(cfg.data, img_size=data_img_size(cfg), seed=split_seed, val_fraction=cfg.val_fraction,
                                          auto_augment=cfg.aa, batch_size=cfg.batch_size)
        self.scale = resolve_scale(cfg, self.bundle)
        resume_state = self._resume_state()
        init_state = None
        if cfg.init == "supernet" and resume_state is None:
            calib = itertools.islice(calibration_loader(self.bundle), cfg.calib_batches)
            init_state = inherited_weights(cfg.supernet, self.space.name, self.scale, self.arch, calib)
        random_seed(cfg.seed)  # torch, numpy and Python alike on every worker: the same initial weights everywhere
        model = timm.create_model(self.space.name, arch=self.arch, scale=self.scale, drop_path_rate=cfg.drop_path)
        if init_state is not None:
            model.load_state_dict(init_state)
        self.model = self._on_device(model)
        self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay) if cfg.model_ema else None
        self.test_loader = make_loader(self.bundle, "test", 256) if self.bundle.test is not None else None
        self.mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing,
                           num_classes=self.scale.num_classes) if cfg.mixes else None
        if self.mixup is not None:
            self.criterion = SoftTargetCrossEntropy()
        elif cfg.smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(cfg.smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()
        self._start_training(resume_state)
        # what the inherited weights score before any training: the search's inherited accuracy, on the same split
        self.init_val_acc = model_accuracy(self.model, self.val_loader) if init_state is not None else None
        self.setup_s = time.time() - t_start

    # ---------------------------------------------------------------- state beyond the base's
    def _resume_state(self) -> dict | None:
        ckpt = super()._resume_state()
        if ckpt is not None and Arch.from_dict(ckpt["arch"]) != self.arch:
            raise UserError(f"--resume: {self.ckpt_path} trains another architecture than the one given; "
                            f"its own is in {self.out / ARCH}")
        return ckpt

    def _extra_state(self) -> dict:
        return {"arch": self.arch.to_dict(), "ema": self.ema.module.state_dict() if self.ema is not None else None,
                "init_val_acc": self.init_val_acc}

    def _restore_extra(self, ckpt: dict) -> None:
        self.init_val_acc = ckpt.get("init_val_acc")
        if self.ema is not None:
            self.ema.module.load_state_dict(ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"])

    # ---------------------------------------------------------------- training
    def _open_out(self) -> None:
        super()._open_out()
        if not self.rank:
            self.arch.save(self.out / ARCH)

    def _step(self, x, y, epoch: int, step: int) -> float:
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        with self._autocast():
            loss = self.criterion(self.model(x).float(), y)
        self._check_finite(loss, epoch, step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._apply_gradients()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.item()

    def _validate(self) -> dict:
        scores = {"val_acc": model_accuracy(self.model, self.val_loader)}
        if self.ema is not None:
            scores["val_acc_ema"] = model_accuracy(self.ema.module, self.val_loader)
        return scores

    def _describe_validation(self, row: dict) -> str:
        ema = f", EMA {row['val_acc_ema']:.3f}" if self.ema is not None else ""
        return f"val acc {row['val_acc']:.3f}{ema}"

    # ---------------------------------------------------------------- the end: evaluate, measure, export
    def final_model(self) -> tuple[nn.Module, str, dict]:
        """The EMA weights when they validate at least as well as the trained ones (timm's choice), else
        the trained ones; with the validation accuracy of each."""
        accs = {"model": model_accuracy(self.model, self.val_loader)}
        if self.ema is not None:
            accs["ema"] = model_accuracy(self.ema.module, self.val_loader)
            if accs["ema"] >= accs["model"]:
                return self.ema.module, "ema", accs
        return self.model, "model", accs

    def recalibrated_accuracy(self, model: nn.Module) -> float | None:
        """Validation accuracy with BatchNorm re-estimated on the fixed calibration batches, as an inherited path is
        scored (None for a model without BatchNorm); the model's own statistics are put back afterwards."""
        if not has_batchnorm(model):
            return None
        was_training = model.training
        model.eval()
        try:
            with recalibrated_model(model, itertools.islice(calibration_loader(self.bundle), self.cfg.calib_batches)):
                return model_accuracy(model, self.val_loader)
        finally:
            model.train(was_training)

    def finish(self) -> dict:
        import timm

        model, which, accs = self.final_model()
        accs["recalibrated"] = self.recalibrated_accuracy(model)
        test_acc = model_accuracy(model, self.test_loader) if self.test_loader is not None else None
        if self.rank:
            return {"val_acc": accs[which], "test_acc": test_acc}
        latency = None
        if self.cfg.latency:
            from nas.measure.latency import measure_latency

            target_model = timm.create_model(self.space.name, arch=self.arch, scale="target")
            latency = measure_latency(target_model, img_size=self.space.target.img_size, batch_size=1, device="auto")
        exports = [export_model(model, fmt, self.out, self.scale.img_size, self.scale.in_chans, seed=self.cfg.seed)
                   for fmt in self.cfg.export]
        metrics = self.metrics(which, accs, test_acc, latency, exports)
        write_text_atomic(self.out / METRICS, json.dumps(metrics, indent=2) + "\n")
        return metrics

    def metrics(self, which: str, accs: dict, test_acc: float | None, latency, exports) -> dict:
        import timm

        cfg, target = self.cfg, self.space.target
        trained, at_target = arch_costs(self.arch, self.scale), arch_costs(self.arch, target)
        return {
            "space": self.space.name, "out": str(self.out),
            "val_acc": accs[which], "test_acc": test_acc,
            "inherited_val_acc": cfg.source.get("inherited_acc"), "init_val_acc": self.init_val_acc,
            "chance": 1.0 / self.scale.num_classes,
            "weights": which, "val_acc_model": accs["model"], "val_acc_ema": accs.get("ema"),
            "val_acc_recalibrated": accs.get("recalibrated"),
            "macs": trained.macs, "params": trained.params, "scale": self.scale.to_dict(),
            "target_macs": at_target.macs, "target_params": at_target.params,
            "target_scale": {"name": target.name, "img_size": target.img_size, "num_classes": target.num_classes},
            "latency_ms": latency.median_ms if latency else None,
            "latency": {**asdict(latency), "img_size": target.img_size, "scale": "target"} if latency else None,
            "epochs": self.epoch, "train_time_s": sum(r["epoch_time_s"] for r in self.history),
            "wall_time_s": self.setup_s + time.time() - self.t_run, "seed": cfg.seed, "split_seed": cfg.split_seed, "init": cfg.init,
            "supernet": cfg.supernet if cfg.init == "supernet" else None,
            "arch": self.arch.to_dict(), "source": cfg.source,
            "data": {"spec": cfg.data, "val_fraction": cfg.val_fraction, **self.bundle.describe()},
            "recipe": {"name": cfg.recipe, **{k: getattr(cfg, k) for k in RECIPE_KEYS}},
            "exports": [e.to_dict() for e in exports], "checkpoint": str(self.ckpt_path),
            "device": str(self.device), "world_size": self.world, "threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "timm": timm.__version__},
        }
