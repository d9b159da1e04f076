"""Latency measurement, the per-device lookup-table predictor and its cache."""
import json
import zlib

import pytest
import torch

from conftest import TINY, assert_user_error, run_main, run_module
from nas.measure import latency
from nas.measure.latency import LatencyPredictor, arch_parts, cache_path, device_key, load_predictor, measure_latency
from search_spaces import get_space
from supernet import ArchNet
from supernet.parts import space_parts

QUICK = {"repeats": {"warmup": 1, "min_repeats": 2, "min_time_s": 0.0}, "rounds": 1, "calib_archs": 3, "progress": False}


def test_device_key_names_device_torch_threads_and_batch():
    base = device_key("cpu", "AMD EPYC 7B13", threads=2, batch_size=1, torch_version="2.14.1")
    assert base == "cpu-amd-epyc-7b13-torch2.14.1-2t-b1"
    variants = [
        device_key("cuda", "NVIDIA H100 80GB HBM3", 2, 1, "2.14.1"),
        device_key("cpu", "Intel(R) Xeon(R) Gold 6248", 2, 1, "2.14.1"),
        device_key("cpu", "AMD EPYC 7B13", 4, 1, "2.14.1"),
        device_key("cpu", "AMD EPYC 7B13", 2, 8, "2.14.1"),
        device_key("cpu", "AMD EPYC 7B13", 2, 1, "2.13.0"),
    ]
    assert len({base, *variants}) == 6
    assert all("/" not in k and " " not in k for k in variants)
    cpu = torch.device("cpu")
    assert cache_path(cpu, 2, 1, "r") != cache_path(cpu, 3, 1, "r") != cache_path(cpu, 3, 4, "r")
    assert cache_path(cpu, 2, 1, "r").parent.name == "r" and cache_path(cpu, 2, 1, "r").suffix == ".json"


def test_measure_latency_reports_median_and_spread_and_restores_state():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Dropout(0.5)).train()
    threads = torch.get_num_threads()
    lat = measure_latency(model, 16, batch_size=2, device="cpu", threads=1, warmup=1, min_repeats=5, min_time_s=0.0)
    assert lat.repeats == 5 and lat.batch_size == 2 and lat.threads == 1 and lat.device == "cpu"
    assert 0 < lat.p25_ms <= lat.median_ms <= lat.p75_ms
    assert model.training and torch.get_num_threads() == threads


@pytest.fixture(scope="module")
def tiny_predictor():
    space, scale = get_space("psvit_ext"), TINY["psvit_ext"]
    return space, scale, latency.build_predictor(space, scale, "cpu", **QUICK)


def test_predictor_covers_every_part_and_is_additive(tiny_predictor):
    space, scale, pred = tiny_predictor
    for seed in range(20):
        arch = space.sample(seed)
        parts = arch_parts(arch, scale)
        assert len(parts) == sum(arch.depths) + len(arch.merges) + 2
        assert pred.predict(arch) == pytest.approx(pred.slope * sum(pred.table[p] for p in parts) + pred.intercept)
    assert pred.slope > 0 and all(v > 0 for v in pred.table.values())
    assert len(pred.calibration["measured_ms"]) == 3


def test_fastest_is_the_minimum_prediction():
    small = get_space("psvit")
    small_scale = TINY["psvit"]
    table = {k: 1.0 + zlib.crc32(k.encode()) % 97 / 10 for k in space_parts(small, small_scale, 1)}
    p = LatencyPredictor("k", "psvit", small_scale, table, slope=2.0, intercept=1.0)
    fastest = small.validate(p.fastest(small))
    assert p.predict(fastest) <= min(p.predict(small.sample(s)) for s in range(3000))


def test_cache_is_reused_not_rebuilt(tmp_path, monkeypatch):
    space, scale = get_space("psvit_ext"), TINY["psvit_ext"]
    first = load_predictor(space, scale, "cpu", root=tmp_path, log=lambda *_: None, **QUICK)
    path = cache_path(torch.device("cpu"), torch.get_num_threads(), 1, tmp_path)
    files = [p for p in tmp_path.iterdir() if p.suffix != ".lock"]
    assert files == [path] and sorted(tmp_path.iterdir()) == [path, path.with_name(path.name + ".lock")]

    def no_build(*a, **k):
        raise AssertionError("the cached table was rebuilt")

    monkeypatch.setattr(latency, "build_predictor", no_build)
    again = load_predictor(space, scale, "cpu", root=tmp_path, log=lambda *_: None)
    assert again == first
    # another batch size is another device key: another file, built
    monkeypatch.undo()
    other = load_predictor(space, scale, "cpu", batch_size=2, root=tmp_path, log=lambda *_: None, **QUICK)
    assert other.key != first.key and len([p for p in tmp_path.iterdir() if p.suffix != ".lock"]) == 2


def test_cache_update_keeps_a_table_another_process_added_meanwhile(tmp_path, monkeypatch):
    """The cache is read again under a file lock before the new table is added: a table written by another
    search while this one was building its own is kept."""
    small, ext = get_space("psvit"), get_space("psvit_ext")
    other = load_predictor(small, TINY["psvit"], "cpu", root=tmp_path, log=lambda *_: None, **QUICK)
    path = cache_path(torch.device("cpu"), torch.get_num_threads(), 1, tmp_path)
    saved = path.read_text()
    path.unlink()  # this process starts from an empty cache ...
    build = latency.build_predictor

    def build_while_another_writes(*a, **k):
        path.write_text(saved)  # ... and another process caches psvit's table while this one builds
        return build(*a, **k)

    monkeypatch.setattr(latency, "build_predictor", build_while_another_writes)
    mine = load_predictor(ext, TINY["psvit_ext"], "cpu", root=tmp_path, log=lambda *_: None, **QUICK)
    monkeypatch.undo()
    assert load_predictor(small, TINY["psvit"], "cpu", root=tmp_path, build=False) == other
    assert load_predictor(ext, TINY["psvit_ext"], "cpu", root=tmp_path, build=False) == mine


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": 1, "tables": {"x": {"key": 1}}}), json.dumps([1, 2]), ""])
def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, capsys, content):
    space, scale = get_space("psvit_ext"), TINY["psvit_ext"]
    path = cache_path(torch.device("cpu"), torch.get_num_threads(), 1, tmp_path)
    path.write_text(content)
    pred = load_predictor(space, scale, "cpu", root=tmp_path, log=lambda *_: None, **QUICK)
    assert f"latency cache {path} is corrupt" in capsys.readouterr().err
    data = json.loads(path.read_text())
    assert LatencyPredictor.from_dict(next(iter(data["tables"].values()))) == pred


def test_predictor_tracks_measurement_on_tiny_models(tiny_predictor):
    """Rank agreement on models whose latencies differ a lot: the shallowest and the deepest of 40 drawn choice by
    choice (uniform samples are nearly all deep), e.g. 8 against 20 layers."""
    space, scale, pred = tiny_predictor
    archs = sorted((space.sample_by_choice(s) for s in range(40)), key=lambda a: sum(a.depths))
    assert sum(archs[-1].depths) - sum(archs[0].depths) >= 8
    pair = [archs[0], archs[-1]]
    measured = [measure_latency(ArchNet(a, scale), scale.img_size, device="cpu", warmup=2, min_repeats=15).median_ms for a in pair]
    assert (pred.predict(pair[0]) < pred.predict(pair[1])) == (measured[0] < measured[1])


@pytest.mark.parametrize("value, fragment", [
    ("fast", "--latency: 'fast' is not a latency"),
    ("-3ms", "--latency: '-3ms' must be a positive latency"),
    ("8 parsecs", "--latency: '8 parsecs' is not a latency"),
    ("", "--latency: '' is not a latency"),
    ("0ms", "--latency: '0ms' must be a positive latency"),
])
def test_malformed_latency_is_rejected(tmp_path, value, fragment):
    proc = run_main("nas.search", "--space", "psvit_ext", "--flops", "4.5G", "--latency", value, cwd=tmp_path)
    assert_user_error(proc, fragment, "e.g. 8ms")
    assert not (tmp_path / "results").exists()


def test_bad_latency_device_and_batch(tmp_path):
    assert_user_error(run_main("nas.search", "--space", "psvit_ext", "--latency", "8ms", "--device", "tpu", cwd=tmp_path),
                      "--device 'tpu'")
    assert_user_error(run_main("nas.search", "--space", "psvit_ext", "--latency", "8ms", "--latency-batch", "0", cwd=tmp_path),
                      "--latency-batch must be at least 1")
    assert not (tmp_path / "results").exists()


def test_profile_prints_measured_and_predicted_latency(tmp_path):
    space = get_space("psvit_ext")
    arch = space.sample(0)
    arch.save(tmp_path / "a.json")
    # a cache prepared for the proxy scale so the CLI finds it instead of building one
    scale = space.proxy
    root = tmp_path / "results" / "latency"
    load_predictor(space, scale, "cpu", root=root, log=lambda *_: None, **QUICK)
    proc = run_module("nas.profile", str(tmp_path / "a.json"), "--scale", "proxy", "--latency", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    measured = next(l for l in proc.stdout.splitlines() if l.startswith("latency measured"))
    predicted = next(l for l in proc.stdout.splitlines() if l.startswith("latency predicted"))
    assert " ms (IQR " in measured and "batch 1" in measured
    assert " ms (" in predicted and "vs measured" in predicted
    assert "building" not in proc.stderr  # the cached table was used
