"""What runs on a CUDA GPU: the supernet and its extracted paths under bfloat16 autocast with channels-last
inputs, a training step there, latency timed with CUDA events, retraining without a device flag. Marked `cuda`:
skipped where CUDA is not visible (conftest), run by `pytest -m cuda` and bench/gpu_check.py on a GPU machine.
None of them needs Ray or Optuna."""
import json

import pytest
import torch

from conftest import TINY, run_module, toy_npz

pytestmark = pytest.mark.cuda


def _tiny_supernet():
    from search_spaces import get_space
    from supernet import Supernet

    space = get_space("psvit_ext")
    return space, TINY["psvit_ext"], Supernet(space, TINY["psvit_ext"])


def test_supernet_path_and_extracted_model_agree_on_the_gpu_under_bf16_channels_last():
    space, scale, net = _tiny_supernet()
    arch = space.sample(0)
    x = torch.randn(4, 3, scale.img_size, scale.img_size)
    with torch.no_grad():
        on_cpu = net.eval()(x, arch)
        net = net.cuda().to(memory_format=torch.channels_last)
        xg = x.cuda().contiguous(memory_format=torch.channels_last)
        fp32 = net(xg, arch)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = net(xg, arch).float()
            extracted = net.extract(arch).cuda().eval()(xg).float()
    spread = on_cpu.abs().max().item()
    assert (fp32.cpu() - on_cpu).abs().max().item() <= 1e-2 * spread  # TF32 convolutions at most
    assert (bf16 - fp32).abs().max().item() <= 0.1 * spread
    assert (extracted - bf16).abs().max().item() <= 0.1 * spread


def test_a_sandwich_step_on_the_gpu_keeps_fp32_weights_and_finite_gradients_and_learns_a_batch():
    from nas.measure.costs import extreme_arch

    space, scale, net = _tiny_supernet()
    net = net.cuda().train().to(memory_format=torch.channels_last)
    paths = [extreme_arch(space, scale, largest=True), extreme_arch(space, scale, largest=False), space.sample(1)]
    x = torch.randn(16, 3, scale.img_size, scale.img_size, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, scale.num_classes, (16,), device="cuda")
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for arch in paths:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(net(x, arch).float(), y)
            loss.backward()
            total += loss.item()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
        opt.step()
        losses.append(total)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert losses[-1] < 0.5 * losses[0], losses


def test_latency_on_the_gpu_is_timed_with_cuda_events_and_cached_per_gpu_model(monkeypatch):
    from nas.measure import latency

    space, scale, net = _tiny_supernet()
    made = []
    real_event = torch.cuda.Event
    monkeypatch.setattr(torch.cuda, "Event", lambda *a, **kw: made.append(1) or real_event(*a, **kw))
    lat = latency.measure_latency(net.extract(space.sample(2)), scale.img_size, batch_size=2, device="cuda")
    assert lat.device.startswith("cuda") and lat.median_ms > 0 and lat.repeats >= 10
    assert len(made) >= 2 * lat.repeats  # a start and an end event around every timed run
    name = torch.cuda.get_device_name(0).lower().split()[-1]
    assert name in latency.cache_path(torch.device("cuda"), 1, 64).name and latency.cache_path(torch.device("cuda"), 1, 64).name.endswith("-b64.json")


def test_retrain_runs_on_the_gpu_without_a_device_flag(tmp_path):
    data = toy_npz(tmp_path / "toy.npz", n_train=64, n_test=16, side=32)
    out = tmp_path / "rt"
    proc = run_module("nas.retrain", "psvit_ext:pvt_spm", "--data", data, "--epochs", "1", "--batch-size", "16", "--no-latency",
                      "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-1500:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda"), metrics["device"]
