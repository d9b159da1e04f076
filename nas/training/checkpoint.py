"""Checkpoints (supernet and retrain): written atomically, read with torch.load(weights_only=True).

A checkpoint names its kind, space and scale; loading it into another space or scale is refused with a
message saying which it is for. Only plain types and tensors are stored, so weights_only loading
needs no allow-list and a downloaded file can never run code.
The random generators' state (rng_state) is stored the same way, for exact resumes.
"""
from __future__ import annotations

import io
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from search_spaces import Scale, get_space
from search_spaces.atomic import write_bytes_atomic

from nas.errors import UserError

KIND = "psvit-nas supernet"
RETRAIN_KIND = "psvit-nas retrain"
FORMATS = {KIND: 2, RETRAIN_KIND: 1}
FORMAT_CHANGES = {  # kind -> {old format: what changed since}
    KIND: {1: "format 1 held separate norms and MLPs per block type at each layer; format 2 shares them across types "
              "(supernet.sharing)"},
}


def save_checkpoint(state: dict, path: str | Path, kind: str = KIND) -> None:
    buf = io.BytesIO()
    torch.save({"kind": kind, "format": FORMATS[kind], **state}, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: str | Path, kind: str = KIND) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"checkpoint {str(path)!r} is corrupt or not a torch checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != kind:
        found = f" (it is a {ckpt['kind']} checkpoint)" if isinstance(ckpt, dict) and isinstance(ckpt.get("kind"), str) else ""
        raise UserError(f"{str(path)!r} is not a {kind} checkpoint{found}")
    if ckpt.get("format") != FORMATS[kind]:
        found = ckpt.get("format")
        why = FORMAT_CHANGES.get(kind, {}).get(found) if isinstance(found, int) else None
        retrain = "; train it again with python -m nas.train_supernet" if kind == KIND else ""
        raise UserError(f"checkpoint {str(path)!r} has format {found!r}; this version reads {kind} format {FORMATS[kind]}"
                        f"{f' ({why})' if why else ''}{retrain}")
    return ckpt


def check_compatible(ckpt: dict, path, space_name: str, scale: Scale) -> None:
    """Refuse a checkpoint of another space or scale, naming both."""
    if ckpt["space"] != space_name:
        raise UserError(f"checkpoint {str(path)!r} is for space {ckpt['space']!r}, not {space_name!r}")
    theirs = Scale.from_dict(ckpt["scale"])
    if theirs != scale:
        diff = [k for k in scale.to_dict() if scale.to_dict()[k] != theirs.to_dict()[k]]
        raise UserError(f"checkpoint {str(path)!r} is for another scale of {space_name} (differs in {', '.join(diff)}: "
                        f"{', '.join(f'{k}={theirs.to_dict()[k]}' for k in diff)}; this run's: "
                        f"{', '.join(f'{k}={scale.to_dict()[k]}' for k in diff)})")


def supernet_from_checkpoint(path: str | Path, space_name: str | None = None, scale: Scale | None = None):
    """(Supernet with the checkpoint's weights, checkpoint dict); with `space_name` and `scale`, a
    checkpoint of another space or scale is refused before anything is built."""
    from supernet import Supernet

    ckpt = load_checkpoint(path)
    if space_name is not None:
        check_compatible(ckpt, path, space_name, scale)
    space = get_space(ckpt["space"])
    net = Supernet(space, Scale.from_dict(ckpt["scale"]))
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"checkpoint {str(path)!r} does not fit space {space.name} ({str(e).splitlines()[0][:120]})") from None
    return net, ckpt


def rng_state() -> dict:
    """torch, numpy (Mixup draws from it) and Python (RandAugment) generators, as plain types and tensors."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
