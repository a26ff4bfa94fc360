"""``adamop.sym``: MXNet's symbolic API for ``adam_update``, with graphs that run and MXNet JSON.

Build a graph with :func:`var`, :func:`adam_update` and :func:`Group`; inspect it like an MXNet
symbol (``list_arguments``, ``infer_shape``, ...); run it with ``bind(...).forward()`` or
``eval``; save and load MXNet 1.9.1's symbol JSON (``tojson``, ``save``, :func:`load`,
:func:`load_json`). Execution goes through ``adamop.api``, the code of the imperative call.
"""
from __future__ import annotations

from .build import Group, adam_update, var
from .executor import Executor
from .symbol import Symbol, load, load_json

Variable = var   # MXNet's alias

__all__ = ["var", "Variable", "adam_update", "Group", "Symbol", "Executor", "load", "load_json"]
