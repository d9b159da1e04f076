"""The selection stage: the search's best architectures and the space's references, trained alone, chosen on validation.

Inherited accuracy ranks the search's best few no better than noise (the audit's tau), so the K best distinct
feasible architectures by inherited accuracy and the feasible reference members are each trained alone with the
run's recipe (`quick`, the run's data, split and proxy scale), every candidate with `select_seeds` seeds in
lockstep, under successive halving (`rungs.py`): every candidate is trained to the first rung (select_epochs / 4),
and once all of them have reported there the better half goes on to the next (select_epochs / 2), and so on to
`select_epochs`, where the few candidates left get `select_final_seeds` seeds; Ray Tune runs each rung's trainings.
The selected architecture is the most accurate on validation (mean over its seeds) at the last rung; the search's best
is compared with every reference at equal epochs (the deepest rung both reached) by Dunnett's test, 90% simultaneous
intervals: beat, tied or lost. The test split is never looked at.

Written to <run>/select/: one folder per candidate (a checkpoint per seed, history.json with every epoch's
validation accuracy per seed), Ray Tune's experiments (tune/); then <run>/selection.csv, <run>/selected.json (a
best.json that `nas.retrain` reads) and section.md, which report.md shows. Every rung's decision is recomputed from
the histories, so a killed selection resumes where it was and a selection on a run extended with more trials trains
its new candidates (`nas.search --resume RUN [--trials N] --select K`); no training is repeated.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from search_spaces import Arch, get_reference, get_space, reference_names
from search_spaces.atomic import write_text_atomic

from nas import runs
from nas.errors import RunFailed, UserError
from nas.measure.costs import arch_costs
from nas.searching import rungs

SELECT = "select"  # the stage's folder in a run
HISTORY = "history.json"


@dataclass(frozen=True)
class Candidate:
    label: str  # folder name: trial-<n> or reference-<name>
    arch: Arch
    kind: str  # searched or reference
    trial: int | None
    inherited_acc: float | None
    reference: str | None = None


def candidates(run_dir: Path, settings, k: int) -> list[Candidate]:
    """The K most accurate distinct feasible architectures of the run by inherited accuracy, and every reference of
    the space within the run's limits (its trial's inherited accuracy when the search evaluated it)."""
    table = pd.read_csv(run_dir / "trials.csv")
    ok = table[(table["status"] == "ok") & table["feasible"].astype(bool) & table["acc"].notna()]
    ok = ok.sort_values(["acc", "trial"], ascending=[False, True], kind="stable").drop_duplicates("arch")
    refs = {}
    space = get_space(settings.space)
    for name in reference_names(settings.space):
        arch = get_reference(settings.space, name)
        costs = arch_costs(arch, space.target)
        if all(getattr(costs, key) <= limit for key, limit in settings.limits().items() if key in ("macs", "params")):
            refs[arch.to_json()] = name
    if settings.latency_ms is not None and "proposed_by" in table:
        # the latency of a reference is known where the search proposed it (within the limit, or it would not have been)
        proposed = set(table.loc[table["proposed_by"].astype(str).str.startswith("reference:"), "arch"])
        refs = {a: n for a, n in refs.items() if a in proposed}
    out, seen = [], set()
    for _, row in ok.head(k).iterrows():
        name = refs.get(row["arch"])
        out.append(Candidate(f"reference-{name}" if name else f"trial-{int(row['trial'])}", Arch.from_json(row["arch"]),
                             "reference" if name else "searched", int(row["trial"]), float(row["acc"]), name))
        seen.add(row["arch"])
    by_arch = {row["arch"]: row for _, row in ok.iterrows()}
    for arch, name in refs.items():
        if arch in seen:
            continue
        row = by_arch.get(arch)
        out.append(Candidate(f"reference-{name}", Arch.from_json(arch), "reference", None if row is None else int(row["trial"]),
                             None if row is None else float(row["acc"]), name))
    return out


def schedule(settings) -> rungs.Schedule:
    return rungs.Schedule(settings.select_epochs, settings.select_seeds, settings.select_final_seeds)


def candidate_configs(candidate: Candidate, settings, config: dict, folder: Path, seeds: int):
    """One RetrainConfig per seed of a candidate: the run's recipe (quick), data, split and proxy scale."""
    from nas.training.recipes import RetrainConfig, resolve_recipe
    from nas.training.retrainer import CHECKPOINT

    knobs = resolve_recipe("quick", {"epochs": settings.select_epochs})
    split_seed, val_fraction = runs.data_split(config)
    cfgs = []
    for seed in range(seeds):
        out = folder / candidate.label / f"seed{seed}"
        cfgs.append(RetrainConfig(space=settings.space, arch=candidate.arch.to_dict(), data=settings.data, seed=seed, split_seed=split_seed,
                                  val_fraction=val_fraction, custom_scale=config.get("proxy_scale"), recipe="quick", **knobs,
                                  calib_batches=settings.calib_batches, out=str(out), resume=(out / CHECKPOINT).exists(),
                                  device="auto", threads=1 if not torch.cuda.is_available() else 0, latency=False,
                                  space_file=settings.space_file,
                                  source={"run": str(settings.run_dir), "trial": candidate.trial, "inherited_acc": candidate.inherited_acc,
                                          "selection": candidate.label}))
    return cfgs


def train_candidate(config: dict, candidates_by_label: dict, settings, run_config: dict, bundle, folder: str) -> None:
    """Ray Tune trainable: one candidate's config["seeds"] seeds trained an epoch at a time up to config["until"] (its
    rung), the seeds behind first (a seed added at the last rung catches up), each epoch's mean validation accuracy
    reported. Its trainers resume from their own checkpoints, so a candidate already there reports nothing. history.json
    holds per epoch the accuracies of the seeds that reached it, in seed order."""
    from ray import tune

    from nas.training.retrainer import Retrainer

    candidate = candidates_by_label[config["candidate"]]
    folder = Path(folder)
    trainers = [Retrainer(cfg, bundle=bundle, log=lambda *_: None)
                for cfg in candidate_configs(candidate, settings, run_config, folder, config["seeds"])]
    history_path = folder / candidate.label / HISTORY
    while min(t.epoch for t in trainers) < config["until"]:
        epoch = min(t.epoch for t in trainers)
        for t in trainers:
            if t.epoch == epoch:
                t.run_epoch()
        accs = [float(t.history[epoch]["val_acc"]) for t in trainers]
        history = [[float(t.history[e]["val_acc"]) for t in trainers if t.epoch > e] for e in range(max(t.epoch for t in trainers))]
        write_text_atomic(history_path, json.dumps({"label": candidate.label, "val_acc": history}) + "\n")
        tune.report({"epoch": epoch + 1, "val_acc": sum(accs) / len(accs), "seed_val_acc": accs, "candidate": candidate.label})


def _say(text: str) -> None:
    print(text, flush=True)


def run_selection(settings, run_dir: Path, log=_say) -> dict:
    """Successive halving over the candidates (rungs.plan says who trains to which rung; Ray Tune runs each rung's
    trainings), resumed from the histories on disk, then choose, compare and write the results."""
    from ray import tune

    from nas.cluster import start_ray
    from nas.data import load_data

    config = runs.read_config(run_dir, flag="--select")
    cands = candidates(run_dir, settings, settings.select)
    if not cands:
        raise UserError(f"--select: run {run_dir} has no evaluated feasible architecture to train")
    split_seed, val_fraction = runs.data_split(config)
    scale = config.get("proxy_scale") or {}
    bundle = load_data(settings.data, img_size=scale.get("img_size"), seed=split_seed, val_fraction=val_fraction)
    folder = (run_dir / SELECT).resolve()  # absolute: Ray Tune runs the trainable in a working directory of its own
    folder.mkdir(parents=True, exist_ok=True)
    plan = schedule(settings)
    marks = plan.marks
    labels = [c.label for c in cands]
    log(f"selection: {len(cands)} candidates ({sum(c.kind == 'reference' for c in cands)} references), {settings.select_seeds} seeds each, "
        f"successive halving, rungs at {', '.join(map(str, marks))} epochs (the better 1/{rungs.ETA} of a rung goes on, "
        f"{settings.select_final_seeds} seeds at the last); folder {folder}")
    if any(_histories(cands, folder).values()):
        log(f"selection: resuming {folder}")
    ray = start_ray(settings.address)
    resources = ray.cluster_resources()
    gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0  # a candidate's seeds train on one GPU where there are GPUs
    trainable = tune.with_resources(
        tune.with_parameters(train_candidate, candidates_by_label={c.label: c for c in cands}, settings=settings, run_config=config,
                             bundle=bundle, folder=str(folder)),
        {"cpu": 1, "gpu": gpus})
    last = None
    while True:
        rung, missing = rungs.plan(labels, _histories(cands, folder), plan)
        if rung is None:
            break
        if (rung, missing) == last:  # the rung's trainings ran but left nothing here: never train it again and again
            raise RunFailed(f"the selection's rung {rung + 1}: the trainings of {', '.join(missing)} wrote no history to {folder}")
        last = (rung, missing)
        seeds = plan.seeds_at(marks[rung])
        log(f"selection: rung {rung + 1} of {len(marks)}: {len(missing)} candidates to {marks[rung]} epochs, {seeds} seeds")
        tuner = tune.Tuner(
            trainable, param_space={"candidate": tune.grid_search(missing), "until": marks[rung], "seeds": seeds},
            tune_config=tune.TuneConfig(num_samples=1, reuse_actors=False,
                                        max_concurrent_trials=max(1, int(resources.get("GPU", 0) if gpus else resources.get("CPU", 1)))),
            run_config=tune.RunConfig(name=f"rung{rung + 1}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(folder / "tune"),
                                      verbose=0, callbacks=[progress_callback(len(missing), settings)],
                                      failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)))
        results = tuner.fit()
        if results.errors:
            raise RunFailed(f"the selection's rung {rung + 1}: {len(results.errors)} training(s) failed ({results.errors[0]}); "
                            f"see {folder}/tune; resume with --resume {run_dir} --select {settings.select}")
    return summarize(cands, settings, run_dir)


def progress_callback(total: int, settings):
    """A line per candidate and epoch (its seeds' validation accuracy) and per finished candidate."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self):
            self.t0 = time.time()
            self.done = 0

        def on_trial_result(self, iteration, trials, trial, result, **info):
            seeds = ", ".join(f"{a:.3f}" for a in result["seed_val_acc"])
            print(f"selection: {result['candidate']} epoch {result['epoch']}/{settings.select_epochs}: val acc {result['val_acc']:.4f} "
                  f"(seeds {seeds}) | {(time.time() - self.t0) / 60:.1f} min", flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            # Ray sets the trial's status after this callback, so the count is kept here.
            self.done += 1
            print(f"selection: {trial.config['candidate']} done ({self.done}/{total} candidates)", flush=True)

    return Progress()


def _histories(cands: list[Candidate], folder: Path) -> dict[str, list[list[float]]]:
    out = {}
    for c in cands:
        path = folder / c.label / HISTORY
        out[c.label] = json.loads(path.read_text())["val_acc"] if path.is_file() else []
    return out


def summarize(cands: list[Candidate], settings, run_dir: Path) -> dict:
    """selection.csv, selected.json and section.md from the candidates' histories, read at the rungs they reached."""
    folder = run_dir / SELECT
    histories = _histories(cands, folder)
    plan = schedule(settings)
    kinds = {c.label: c.kind for c in cands}
    if all(len(h) < plan.marks[0] for h in histories.values()):
        raise RunFailed(f"the selection trained no candidate to its first rung (see {folder}/tune)")
    chosen_label, epochs = rungs.choose(kinds, histories, plan)
    comparison = rungs.comparison(kinds, histories, epochs, plan)
    space = get_space(settings.space)
    rows = []
    for c in cands:
        e = epochs[c.label]
        seeds = rungs.at(histories[c.label], e, plan.seeds_at(e)) if e else []
        costs = arch_costs(c.arch, space.target)
        rows.append({"label": c.label, "kind": c.kind, "reference": c.reference, "trial": c.trial, "inherited_acc": c.inherited_acc,
                     "epochs": e, "val_acc": rungs.mean(seeds) if seeds else float("nan"), "seed_val_acc": json.dumps(seeds),
                     "target_macs": costs.macs, "params": costs.params, "arch": c.arch.to_json()})
    table = pd.DataFrame(rows).sort_values(["epochs", "val_acc", "inherited_acc"], ascending=False, kind="stable", na_position="last")
    if comparison is not None:
        by_label = {c.label: c for c in cands}
        comparison["winner_acc"] = rungs.mean(rungs.at(histories[comparison["winner"]], comparison["epochs"], plan.seeds_at(comparison["epochs"])))
        comparison["references"] = {by_label[label].reference: {**c, "label": label} for label, c in comparison["references"].items()}
    chosen = table.set_index("label").loc[chosen_label]
    selected = {"space": settings.space, "arch": json.loads(chosen["arch"]), "accuracy": float(chosen["val_acc"]),
                "macs": int(chosen["target_macs"]), "params": int(chosen["params"]),
                "trial": None if pd.isna(chosen["trial"]) else int(chosen["trial"]), "run": str(run_dir),
                "inherited_acc": None if pd.isna(chosen["inherited_acc"]) else float(chosen["inherited_acc"]),
                "reference": None if pd.isna(chosen["reference"]) else chosen["reference"], "label": chosen_label,
                "split": f"validation (trained alone {int(chosen['epochs'])} epochs, mean of {plan.seeds_at(int(chosen['epochs']))} seeds; "
                         f"the best of {len(table)} candidates)", "comparison": comparison}
    write_text_atomic(run_dir / "selection.csv", table.to_csv(index=False))
    write_text_atomic(run_dir / "selected.json", json.dumps(selected, indent=2) + "\n")
    write_text_atomic(folder / "section.md", section(table, selected, comparison, settings))
    return {"table": table, "selected": selected, "comparison": comparison}


def sentence(selected: dict, comparison: dict | None) -> str:
    """The report's one line: did the search's best beat every reference at equal epochs, tie, or lose to one."""
    if comparison is None:
        return ("No reference member of the space fits the limits: the selection had nothing to compare with." if selected["reference"] is None
                else f"No searched candidate was trained: {selected['reference']} is selected.")
    refs = comparison["references"]
    figures = "; ".join(f"{name} {c['mean'] * 100:+.2f} [{c['ci90'][0] * 100:+.2f}, {c['ci90'][1] * 100:+.2f}]" for name, c in refs.items())
    seeds = next(iter(refs.values()))["seeds"][0]
    detail = (f"its best, {comparison['winner']}, minus each reference at {comparison['epochs']} epoch{'s' if comparison['epochs'] != 1 else ''}, points of validation accuracy "
              f"(mean of {seeds} seeds, 90% Dunnett intervals): {figures}")
    chosen = f"; selected: {selected['label']}" if selected["label"] != comparison["winner"] else ""
    if comparison["verdict"] == "beat":
        return f"The search beat every reference it was compared with: {detail}{chosen}."
    if comparison["verdict"] == "lost":
        behind = [name for name, c in refs.items() if c["ci90"][1] < 0]
        return f"The search lost to {', '.join(behind)}: {detail}{chosen}."
    return f"The search tied with the references: {detail}{chosen}."


def section(table: pd.DataFrame, selected: dict, comparison: dict | None, settings) -> str:
    shown = table[["label", "kind", "inherited_acc", "epochs", "val_acc", "target_macs"]].copy()
    shown["target_macs"] = (shown["target_macs"] / 1e9).round(2)
    lines = ["## Selection", "", sentence(selected, comparison), "",
             f"`--select {settings.select}`: {len(table)} candidates trained alone (quick recipe, {settings.select_seeds} seeds in lockstep, "
             f"successive halving, rungs at {', '.join(map(str, schedule(settings).marks))} epochs, {settings.select_final_seeds} seeds at the "
             f"last), scored on the validation "
             f"split; selected: the most accurate at the last rung, "
             f"{selected['label']} (`selected.json`).", "",
             "| candidate | kind | inherited acc | epochs | val acc (mean of seeds) | target GMACs |", "|---|---|---|---|---|---|"]
    for _, r in shown.iterrows():
        inherited = "" if pd.isna(r["inherited_acc"]) else f"{r['inherited_acc']:.3f}"
        lines.append(f"| {r['label']} | {r['kind']} | {inherited} | {int(r['epochs'])} | {r['val_acc']:.4f} | {r['target_macs']:.2f} |")
    return "\n".join(lines) + "\n"
