"""A tiny space for end-to-end tests of the CLIs: psvit_ext's choices at a 16x16 proxy scale."""
from dataclasses import replace

from search_spaces import Scale, get_space, list_spaces, register_space
from supernet import register_space_model

if "tiny_ext" not in list_spaces():
    _ext = get_space("psvit_ext")
    register_space(replace(
        _ext,
        name="tiny_ext",
        stages=tuple(replace(r, depths=tuple(d for d in r.depths if d <= 3) or (min(r.depths),)) for r in _ext.stages),
        proxy=Scale(name="proxy", img_size=16, stem_stride=2, embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 2, 2), num_classes=3),
    ))
    register_space_model("tiny_ext")
