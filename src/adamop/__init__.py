"""adamop: MXNet 1.9.1's ``adam_update`` operator, bit for bit, on NumPy arrays and PyTorch tensors.

Nothing is chosen or compiled at import time; backends load on first use (``adamop info``).
"""
from __future__ import annotations

from . import backends as _backends  # noqa: F401  (registers the backends; imports none)
from . import sparse, sym
from .api import adam_update, adam_update_multi, mp_adam_update, mp_adam_update_multi
from .dispatch import BackendUnavailableError
from .ops.adam import AdamParams
from .optimizer import bias_corrected_lr
from .storage import RowSparseArray

__version__ = "0.1.0"

__all__ = ["adam_update", "adam_update_multi", "mp_adam_update", "mp_adam_update_multi",
           "RowSparseArray", "AdamParams",
           "BackendUnavailableError", "bias_corrected_lr", "sparse", "sym", "__version__"]
