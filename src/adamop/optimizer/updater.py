"""``Updater``: MXNet's ``mx.optimizer.get_updater(opt)``, the loop Gluon and Module call."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _tensors
from .base import Optimizer

__all__ = ["Updater", "get_updater"]


class Updater:
    """Applies an optimizer to parameters by index, keeping their states (MXNet's ``Updater``).

    ``updater(index, grad, weight)`` updates ``weight`` in place; ``index``, ``grad`` and
    ``weight`` may be lists (a whole model), as Gluon's Trainer and Module pass them. States are
    created on the first sight of an index (``create_state_multi_precision``), every entry is
    updated in list order exactly as MXNet's loop does, and the whole list runs as one batched
    call (plus one for multi-precision weights).

    Attributes:
        optimizer: the optimizer.
        states: index -> state (Adam: ``(mean, var)``, or ``(weight32, (mean, var))`` for a
            float16 weight with ``multi_precision``).
        states_synced: index -> whether the state is on its weight's device (False after
            :meth:`set_states`: states then move to each weight's library/device on next use).
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Updater: expected an adamop optimizer (adamop.optimizer.create("
                            f"'adam', ...)), got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.states: dict = {}
        self.states_synced: dict = {}
        self.aggregate_updates = optimizer.aggregate_num > 0

    def __call__(self, index: Any, grad: Any, weight: Any) -> None:
        """Update ``weight`` (or each weight of a list) in place with its gradient.

        Args:
            index: a parameter index (any hashable; bytes are decoded, as MXNet does), or a list
                or tuple of them.
            grad: the gradient(s), matching ``index``.
            weight: the weight(s), updated in place.

        Raises:
            TypeError, ValueError: bad inputs, before any weight, state or count changes.
        """
        if isinstance(index, (list, tuple)):
            indices = list(index)
            if not set(map(type, indices)) <= {int}:   # ints need no conversion or check
                indices = [_key(i) for i in indices]
            grads = _as_list("grad", grad, len(indices))
            weights = _as_list("weight", weight, len(indices))
        else:
            indices, grads, weights = [_key(index)], [grad], [weight]
        opt = self.optimizer
        if weights:
            opt._set_current_context(_tensors.device_id(weights[0]))
        new: dict = {}
        if not self.states.keys() >= set(indices) or False in self.states_synced.values():
            for idx, w in zip(indices, weights):
                if idx not in self.states and idx not in new:
                    new[idx] = opt.create_state_multi_precision(idx, w)
                elif idx not in new and not self.states_synced.get(idx, False):
                    new[idx] = _tensors.like(self.states[idx], w)
        if new:
            states = [new[i] if i in new else self.states[i] for i in indices]
        else:
            states = list(map(self.states.__getitem__, indices))
        opt._update_many(indices, weights, grads, states, multi_precision=opt.multi_precision)
        self.states.update(new)
        self.states_synced.update(dict.fromkeys(new, True))

    def get_states(self, dump_optimizer: bool = False) -> bytes:
        """The states (and the optimizer, with its counts and scheduler) as MXNet's pickle."""
        from .. import states
        return states.dumps((self.states, self.optimizer) if dump_optimizer else self.states)

    def set_states(self, data: bytes) -> None:
        """Load :meth:`get_states` bytes (or an MXNet ``.states`` file's); a dump with the
        optimizer replaces it too."""
        from .. import states
        loaded = states.loads(data)
        if isinstance(loaded, tuple) and len(loaded) == 2:
            self.states, self.optimizer = loaded
        else:
            self.states = loaded
        self.states_synced = dict.fromkeys(self.states, False)

    def save_states(self, path: str) -> None:
        """Gluon's ``Trainer.save_states``: the states and the optimizer to a ``.states`` file
        (written atomically), which MXNet's ``Trainer.load_states`` reads too."""
        from .. import states
        states.save(path, (self.states, self.optimizer))

    def load_states(self, path: str) -> None:
        """Gluon's ``Trainer.load_states``: :meth:`set_states` from a ``.states`` file."""
        with open(path, "rb") as f:
            self.set_states(f.read())


def get_updater(optimizer: Optimizer) -> Updater:
    """MXNet's ``get_updater``: an :class:`Updater` over ``optimizer``.

    Examples:
        >>> import numpy as np
        >>> from adamop import optimizer
        >>> updater = optimizer.get_updater(optimizer.create("adam", learning_rate=0.1))
        >>> ws = [np.ones(2, np.float32), np.ones(3, np.float32)]
        >>> updater([0, 1], [np.ones(2, np.float32), np.ones(3, np.float32)], ws)
        >>> sorted(updater.states), updater.optimizer.num_update
        ([0, 1], 1)
    """
    return Updater(optimizer)


def _key(index: Any) -> Any:
    """A hashable index: bytes decoded to str, as MXNet's ``py_str``; a NumPy integer as the
    Python int it equals (the same dict key, and a plain value in ``.states`` pickles)."""
    if isinstance(index, bytes):
        return index.decode("utf-8")
    if isinstance(index, np.integer):
        return int(index)
    try:
        hash(index)
    except TypeError:
        raise TypeError(f"Updater: an index must be hashable (an int or a name), got "
                        f"{type(index).__name__}") from None
    return index


def _as_list(name: str, value: Any, n: int) -> list:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"Updater: index is a list of {n}, so {name} must be a list or tuple of "
                        f"{n} arrays, got {type(value).__name__}")
    if len(value) != n:
        raise ValueError(f"Updater: {len(value)} {name}s for {n} indices; give one per index")
    return list(value)
