"""A tiny space for end-to-end tests of the CLIs: psvit_ext's choices at a 16x16 proxy scale, with two reference
members (one within the tests' 2.3G MAC limit, one far over it)."""
from dataclasses import replace

from search_spaces import Layer, Scale, get_space, list_spaces, reference, register_space
from search_spaces.references import arch_of, repeat
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

    _STOKEN = Layer("stoken", grid=7, mlp_ratio=4)

    @reference("tiny_ext")
    def tiny_small():
        """A small member: super tokens early, strips and one MHSA layer late, conv merges (1.10 GMACs at 224)."""
        return arch_of("tiny_ext", ("conv", "conv", "conv"), repeat(_STOKEN, 1), repeat(_STOKEN, 2),
                       repeat(Layer("strip", strip_width=3, mlp_ratio=3), 2), repeat(Layer("mhsa", mlp_ratio=2), 1))

    @reference("tiny_ext")
    def tiny_large():
        """A large member: MAF, super tokens and MHSA at every depth's maximum, SPM merges (5.81 GMACs at 224)."""
        return arch_of("tiny_ext", ("spm", "spm", "spm"), repeat(Layer("maf", mlp_ratio=4, gld_ratio=0.5, windows=8), 3),
                       repeat(_STOKEN, 3), repeat(_STOKEN, 3), repeat(Layer("mhsa", mlp_ratio=4), 3))
