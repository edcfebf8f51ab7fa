"""One module per saga; importing this package registers them all."""
from .place_order import PLACE_ORDER

__all__ = ["PLACE_ORDER"]
