"""python -m nas.profile <arch.json | timm:MODEL_NAME> [--img-size N] [--scale target|proxy]

Prints MACs (G, paper convention: attention's matrix products included) and parameters (M) of one
architecture at its space's target scale, or of any timm model as a baseline.
"""
from __future__ import annotations

import difflib
import sys

from search_spaces import Arch, get_space

from .cli import Parser, UserError, run_cli
from .costs import arch_costs, measure_costs


def load_model(spec: str, img_size: int | None, scale: str):
    """(model, description, input size, analytic Costs or None) for an arch file or `timm:NAME`."""
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
        size = img_size or model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
        return model, f"timm:{name}", size, None
    arch = Arch.load(spec)
    space = get_space(arch.space)
    space.validate(arch)
    sc = space.scale(scale).with_overrides(img_size=img_size)
    try:
        sc.check()
    except ValueError as e:
        raise UserError(f"--img-size {img_size}: {e}") from None
    model = timm.create_model(arch.space, arch=arch, scale=sc)
    return model, f"{spec} (space {arch.space}, {scale} scale)", sc.img_size, arch_costs(arch, sc)


@run_cli
def main(argv=None) -> int:
    p = Parser(prog="python -m nas.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="an architecture JSON file (e.g. results/best.json) or timm:MODEL_NAME")
    p.add_argument("--img-size", type=int, default=None, help="input resolution (default: the model's)")
    p.add_argument("--scale", choices=("target", "proxy"), default="target", help="scale of an architecture file")
    args = p.parse_args(argv)
    model, what, size, analytic = load_model(args.model, args.img_size, args.scale)
    costs = measure_costs(model, size)
    print(f"model: {what}, input {size}x{size}")
    print(f"MACs: {costs.macs / 1e9:.2f} G")
    print(f"params: {costs.params / 1e6:.1f} M")
    if analytic is not None:
        print(f"analytic model: {analytic.macs / 1e9:.2f} G MACs, {analytic.params / 1e6:.1f} M params")
    return 0


if __name__ == "__main__":
    sys.exit(main())
