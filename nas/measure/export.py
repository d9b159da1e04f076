"""Export a trained model to ONNX or TorchScript, each file checked against the torch model.

ONNX goes through torch.onnx.export (the dynamo exporter, which needs onnxscript) with a dynamic batch
dimension, weights inside the one file; TorchScript through torch.jit.trace. The check runs the file
(onnxruntime for ONNX, torch.jit.load for TorchScript) and the torch model on a random batch of
another size than the one exported with, and refuses the export when the outputs differ by more than
`atol`. A file is written under a temporary name and moved into place only after it passed.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from nas.errors import RunFailed, UserError

FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.ts"}
ALIASES = {"ts": "torchscript", "jit": "torchscript"}
ATOL = 1e-4


@dataclass(frozen=True)
class Exported:
    format: str
    path: str
    max_abs_diff: float
    check_batch: int

    def to_dict(self) -> dict:
        return asdict(self)


def parse_formats(values) -> tuple[str, ...]:
    """`onnx`, `torchscript` (or `ts`), comma-separated and/or repeated; in the order given, without repeats."""
    if not values:
        return ()
    items = [values] if isinstance(values, str) else list(values)
    formats: list[str] = []
    for item in items:
        for name in (part.strip().lower() for part in item.split(",")):
            name = ALIASES.get(name, name)
            if name not in FILE_NAMES:
                raise UserError(f"--export {name!r} is not a format; allowed: {', '.join(FILE_NAMES)} (comma-separated)")
            if name not in formats:
                formats.append(name)
    return tuple(formats)


def _onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False, dynamic_shapes=({0: batch},),
                          input_names=["images"], output_names=["logits"], verbose=False)


def _run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def _torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notices and trace's shape-constant warnings
        torch.jit.save(torch.jit.trace(model, example, check_trace=False), str(path))


def _run_torchscript(path: Path, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu")(x)


_WRITERS = {"onnx": (_onnx, _run_onnx), "torchscript": (_torchscript, _run_torchscript)}


def export_model(model: nn.Module, fmt: str, out_dir: str | Path, img_size: int, in_chans: int = 3, atol: float = ATOL,
                 seed: int = 0) -> Exported:
    """Write `model` (as in eval mode, on the CPU) to out_dir/model.onnx or model.ts and check it."""
    write, run = _WRITERS[fmt]
    out_dir = Path(out_dir)
    path = out_dir / FILE_NAMES[fmt]
    model = copy.deepcopy(model).float().cpu().eval()
    g = torch.Generator().manual_seed(seed)
    example = torch.randn(2, in_chans, img_size, img_size, generator=g)
    check = torch.randn(3, in_chans, img_size, img_size, generator=g)
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.no_grad():
            write(model, example, tmp)
            expected = model(check)
        diff = (run(tmp, check) - expected).abs().max().item()
        if not diff <= atol:
            raise RunFailed(f"{fmt} export does not match the torch model: max abs difference {diff:.3g} > {atol:g} "
                            f"on a random batch of {len(check)}; nothing was written to {path}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return Exported(fmt, str(path), diff, len(check))
