"""PyTorch front end: MXNet 1.9.1's Adam as a ``torch.optim.Optimizer`` (``adamop.torch.Adam``).

A model ported from MXNet trains with MXNet's numbers, and an MXNet run resumes in PyTorch
(:meth:`Adam.from_mxnet`). Importing this module imports torch.
"""
from __future__ import annotations

from .adam import Adam

__all__ = ["Adam"]
