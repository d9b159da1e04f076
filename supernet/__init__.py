"""The weight-sharing network and its building blocks. Importing it registers the spaces' timm models."""
from .model import ArchNet, Supernet, create_arch_net, register_space_model, resolve_arch

__all__ = ["ArchNet", "Supernet", "create_arch_net", "register_space_model", "resolve_arch"]
