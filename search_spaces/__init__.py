"""What can be chosen: spaces, the Arch record, validation, sampling. Knows nothing about torch."""
from .arch import FORMAT_VERSION, Arch, ArchError, Layer
from .references import get_reference, load_arch, reference, reference_doc, reference_names
from .registry import UnknownSpaceError, get_space, list_spaces, register_space
from .scale import Scale
from .space import SearchSpace, StageRule
from .space_file import SpaceFileError, file_sha256, load_space_file
from .vocabulary import (BLOCK_TYPES, MERGE_TYPES, BlockType, ChoiceField, register_block_type, register_choice_field,
                         register_merge)
from . import nb201, psvit, psvit_ext  # noqa: F401  (registers the built-in spaces)

__all__ = [
    "Arch", "ArchError", "Layer", "Scale", "SearchSpace", "StageRule", "UnknownSpaceError",
    "BLOCK_TYPES", "MERGE_TYPES", "FORMAT_VERSION", "get_space", "list_spaces", "register_space",
    "SpaceFileError", "file_sha256", "load_space_file",
    "BlockType", "ChoiceField", "register_block_type", "register_choice_field", "register_merge",
    "get_reference", "load_arch", "reference", "reference_doc", "reference_names",
]
