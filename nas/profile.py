"""python -m nas.profile <arch.json | SPACE:REFERENCE | timm:MODEL_NAME> [--img-size N] [--scale target|proxy]
    [--latency [--device auto|cpu|cuda] [--batch-size 1] [--threads N]]

Prints MACs (G, paper convention: attention's matrix products included) and parameters (M) of one
architecture at its space's target scale, or of any timm model as a baseline; with --latency also
its measured latency on the device and, for an architecture of a space, the latency predicted by
that device's lookup table (built and cached in results/latency/ on first use).
"""
from __future__ import annotations

import difflib
import sys

from search_spaces import get_space, load_arch
from supernet.blocks.registry import has_modules

from nas.cli import Parser, run_cli
from nas.errors import UserError
from nas.measure.costs import arch_costs, measure_costs
from nas.measure.latency import device_name, resolve_device


def load_model(spec: str, img_size: int | None, scale: str):
    """(model, description, input size, analytic Costs, (Arch, Scale)) for an arch file; the last two
    are None for `timm:NAME`."""
    import timm

    import supernet  # noqa: F401  (registers the spaces' timm models)

    if spec.startswith("timm:"):
        name = spec[len("timm:"):]
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            hint = f"; close names: {', '.join(close)}" if close else "; list them with timm.list_models('*pattern*')"
            raise UserError(f"unknown timm model {name!r}{hint}")
        kwargs = {"img_size": img_size} if img_size else {}
        try:
            model = timm.create_model(name, pretrained=False, **kwargs)
        except TypeError:
            raise UserError(f"timm model {name!r} does not take --img-size") from None
        except (ValueError, AssertionError, RuntimeError) as e:
            raise UserError(f"timm model {name!r} cannot be built at --img-size {img_size} ({str(e).splitlines()[0][:150]})") from None
        size = img_size or model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
        return model, f"timm:{name}", size, None, None
    arch = load_arch(spec)
    space = get_space(arch.space)
    space.validate(arch)
    if not has_modules(space):
        raise UserError(f"{spec}: space {space.name} has no modules to build and profile (its costs and latencies come from its "
                        "benchmark table); profile a psvit or psvit_ext architecture, or timm:MODEL_NAME")
    sc = space.scale(scale).with_overrides(img_size=img_size)
    try:
        sc.check()
    except ValueError as e:
        raise UserError(f"--img-size {img_size}: {e}") from None
    model = timm.create_model(arch.space, arch=arch, scale=sc)
    return model, f"{spec} (space {arch.space}, {scale} scale)", sc.img_size, arch_costs(arch, sc), (arch, sc)


@run_cli
def main(argv=None) -> int:
    p = Parser(prog="python -m nas.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="an architecture JSON file (e.g. results/best.json), a space's reference (e.g. psvit_ext:stvit_s) "
                                 "or timm:MODEL_NAME")
    p.add_argument("--img-size", type=int, default=None, help="input resolution (default: the model's)")
    p.add_argument("--scale", choices=("target", "proxy"), default="target", help="scale of an architecture file")
    p.add_argument("--latency", action="store_true", help="also measure (and predict) the latency")
    p.add_argument("--device", default="auto", help="latency device: auto (cuda if present), cpu, cuda")
    p.add_argument("--batch-size", type=int, default=1, help="latency batch size (default 1)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for latency (default: torch's)")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.threads < 0:
        raise UserError("--batch-size must be at least 1 and --threads at least 0")
    if args.img_size is not None and args.img_size < 1:
        raise UserError(f"--img-size must be a positive number of pixels, got {args.img_size}")
    device = resolve_device(args.device) if args.latency else None
    model, what, size, analytic, arch_scale = load_model(args.model, args.img_size, args.scale)
    try:
        costs = measure_costs(model, size)
    except RuntimeError as e:  # e.g. a patch or kernel larger than the --img-size image
        raise UserError(f"--img-size {size}: {what} cannot run on {size}x{size} images ({str(e).splitlines()[0][:150]})") from None
    print(f"model: {what}, input {size}x{size}")
    print(f"MACs: {costs.macs / 1e9:.2f} G")
    print(f"params: {costs.params / 1e6:.1f} M")
    if analytic is not None:
        print(f"analytic model: {analytic.macs / 1e9:.2f} G MACs, {analytic.params / 1e6:.1f} M params")
    if args.latency:
        print_latency(model, size, arch_scale, device, args.batch_size, args.threads or None)
    return 0


def print_latency(model, size: int, arch_scale, device, batch_size: int, threads: int | None) -> None:
    from nas.measure.latency import load_predictor, measure_latency

    measured = measure_latency(model, size, batch_size, device, threads)
    print(f"latency measured on {device.type} ({device_name(device)}, batch {batch_size}, {measured.threads} threads): {measured}")
    if arch_scale is None:
        print("latency predicted: not available (the predictor covers architectures of the search spaces, not timm models)")
        return
    arch, scale = arch_scale
    predictor = load_predictor(get_space(arch.space), scale, device, batch_size, threads, log=lambda m: print(m, file=sys.stderr))
    predicted = predictor.predict(arch)
    error = (predicted - measured.median_ms) / measured.median_ms
    print(f"latency predicted (lookup table {predictor.key}): {predicted:.2f} ms ({error:+.1%} vs measured)")


if __name__ == "__main__":
    sys.exit(main())
