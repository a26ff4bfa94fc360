"""``adamop.torch.Adam``: MXNet 1.9.1's Adam as a ``torch.optim.Optimizer``, bit for bit."""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..ops.adam import ADAM_UPDATE
from ..optimizer._rates import OVERRIDE, override_base_lr, restore_scheduler, save_scheduler
from ..planner import Planner
from . import _load, _step
from ._hyper import GROUP_DEFAULTS, OPTIMIZER_WIDE, OWNER, check_group, check_optimizer_wide
from ._state import check_dtype, new_state

__all__ = ["Adam"]


class Adam(torch.optim.Optimizer):
    r"""MXNet 1.9.1's ``mx.optimizer.Adam`` as a ``torch.optim.Optimizer``: same numbers, bit for
    bit, on CPU and CUDA tensors, under DDP, ``ZeroRedundancyOptimizer`` and FSDP2.

    Each update of a parameter counts it (its state's ``step``); the optimizer's ``num_update``
    is the largest count so far. The learning rate is ``lr_scheduler(num_update)`` when an
    ``adamop.lr_scheduler`` scheduler is given, else the group's ``lr`` (so torch's lr schedulers
    work, by editing it), times ``lr_mult``, with the bias correction folded in, in Python double
    (:func:`adamop.bias_corrected_lr`); weight decay is ``weight_decay * wd_mult``, added to the
    gradient before clipping:

    .. math::

        g = \mathrm{clip}(grad\cdot rescale\_grad + wd\cdot w),\quad
        m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
        w \leftarrow w - \frac{lr_t\, m}{\sqrt{v} + \epsilon}

    .. warning::
        ``torch.optim.Adam`` differs on each point: its weight decay is added after clipping would
        be, its epsilon is inside the bias correction, its bias correction runs in tensor
        arithmetic, and it has no lazy sparse update. Use this class to reproduce MXNet.

    A sparse COO gradient (``nn.Embedding(sparse=True)``, coalesced or not) updates only its
    rows when ``lazy_update`` (MXNet's lazy update: weight decay too reaches only those rows).
    float16 parameters with ``multi_precision=True`` are updated through float32 master copies
    (MXNet's); bfloat16 parameters need them (MXNet has no bfloat16 arithmetic). One ``step()`` is
    one batched call through the update plan per kind of update, device and dtype.

    Args:
        params: parameters or param groups, as for any torch optimizer.
        lr: the learning rate. With ``lr_scheduler`` it replaces the scheduler's ``base_lr``
            (MXNet's quirk, with MXNet's warning) unless ``None``.
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: MXNet's epsilon, added to ``sqrt(v)``.
        weight_decay: MXNet's ``wd``.
        rescale_grad: the gradient's scale (MXNet's Gluon Trainer sets ``1 / batch_size``).
        clip_gradient: clip the rescaled gradient to ``[-c, c]``; ``None`` or 0: no clipping.
        lazy_update: sparse gradients update only their rows.
        multi_precision: float32 master copies of float16 and bfloat16 parameters.
        lr_scheduler: an ``adamop.lr_scheduler`` scheduler (MXNet's, called with
            ``num_update``); it is part of the optimizer's ``state_dict``.
        begin_num_update: the count each parameter starts from.

    Param groups take ``lr``, ``betas``, ``eps``, ``weight_decay``, ``rescale_grad``,
    ``clip_gradient``, ``lazy_update``, ``lr_mult`` and ``wd_mult`` (default 1).

    Raises:
        TypeError, ValueError: a bad argument or parameter, before anything is changed.

    Examples:
        >>> import torch, adamop.torch
        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> opt = adamop.torch.Adam([w], lr=0.1)
        >>> w.grad = torch.full((3,), 0.5)
        >>> opt.step()      # t = 1: lr = 0.1 * (sqrt(0.001) / 0.1), as MXNet folds it in
        >>> w.detach().numpy()      # MXNet 1.9.1's mx.optimizer.Adam gives these bits too
        array([0.8999994, 0.8999994, 0.8999994], dtype=float32)
    """

    def __init__(self, params: Iterable[Any], lr: float | None = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, rescale_grad: float = 1.0,
                 clip_gradient: float | None = None, lazy_update: bool = True,
                 multi_precision: bool = False, lr_scheduler: Any = None,
                 begin_num_update: int = 0) -> None:
        mp, sched, begin = check_optimizer_wide(multi_precision, lr_scheduler, begin_num_update)
        if lr is None and sched is None:
            raise TypeError(f"{OWNER}: lr=None keeps an lr_scheduler's base_lr; without a "
                            f"scheduler give a learning rate, e.g. lr=1e-3")
        defaults = {**GROUP_DEFAULTS, "lr": sched.base_lr if lr is None else lr,
                    "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "rescale_grad": rescale_grad, "clip_gradient": clip_gradient,
                    "lazy_update": lazy_update}
        check_group(defaults)
        self.multi_precision, self.lr_scheduler, self.begin_num_update = mp, sched, begin
        self.num_update = begin
        self._fresh_attributes()
        super().__init__(params, defaults)
        override_base_lr(sched, lr, lambda: warnings.warn(OVERRIDE, UserWarning, stacklevel=4))

    def _fresh_attributes(self) -> None:
        self._planner = Planner(ADAM_UPDATE)   # keeps the plan while the tensors keep their memory
        self._scratch: dict = {}               # float32 copies of bfloat16 grads
        self._unused: dict = {}                # id(param) -> a state made here, not used yet

    @property
    def learning_rate(self) -> float:
        """MXNet's ``learning_rate``: the scheduler's at ``num_update`` (a stateful call, as in
        MXNet), else the first group's ``lr``."""
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.param_groups[0]["lr"]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (checked, with states made for its trainable parameters: a checkpoint
        loader such as ``torch.distributed.checkpoint`` finds them, and each is made again from
        the weight at its first update, as MXNet makes it)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{OWNER}: a param group must be a dict, got "
                            f"{type(param_group).__name__}")
        where = f"param_groups[{len(self.param_groups)}] "
        for key in OPTIMIZER_WIDE:
            if key in param_group and not _same(param_group[key], getattr(self, key)):
                raise ValueError(f"{OWNER}: {where}sets {key}={param_group[key]!r}, but {key} is "
                                 f"a setting of the whole optimizer ({getattr(self, key)!r}); "
                                 f"pass it to Adam(...)")
        check_group({**self.defaults, **param_group}, where)
        params = param_group.get("params")
        if isinstance(params, torch.Tensor):
            param_group["params"] = [params]
        elif params is not None and not isinstance(params, set):   # torch refuses sets
            param_group["params"] = list(params)   # as torch does: a generator is read once
        listed = param_group.get("params", [])
        if isinstance(listed, list) and len({id(p) for p in listed}) != len(listed):
            raise ValueError(f"{OWNER}: {where}lists a parameter twice; list each once")
        for i, p in enumerate(listed):
            if isinstance(p, tuple) and len(p) == 2:   # (name, parameter), as torch accepts
                p = p[1]
            if isinstance(p, torch.Tensor):
                check_dtype(p, self.multi_precision, f"{where.strip()}['params'][{i}]")
        super().add_param_group(param_group)
        for p in self.param_groups[-1]["params"]:
            if p.requires_grad and p not in self.state:
                state = self.state[p] = new_state(p, self.multi_precision, self.begin_num_update)
                self._unused[id(p)] = state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient.

        Args:
            closure: re-evaluates the model and returns the loss (run with grad enabled).

        Returns:
            The closure's loss, or None.

        Raises:
            TypeError, ValueError: a bad hyperparameter, gradient or state; nothing has changed
                (a model whose updates are of several kinds is checked in bulk before the first
                kind runs).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        saved = save_scheduler(self.lr_scheduler)
        try:
            work = _step.gather(self)
            _step.run(work, self._planner, self._scratch, self._label)
        except BaseException:
            restore_scheduler(self.lr_scheduler, saved)
            raise
        _step.commit(self, work)
        return loss

    def _label(self, param: torch.Tensor) -> str:
        """Where a parameter is, for messages."""
        for gi, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p is param:
                    return f"param_groups[{gi}]['params'][{i}]"
        return "a parameter"

    # ---- state dict ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """torch's layout (``state``: per parameter ``step``, ``exp_avg``, ``exp_avg_sq`` and,
        with master copies, ``master_weight``; ``param_groups``), plus ``"adamop"``: the
        optimizer's ``num_update`` and its MXNet scheduler's state."""
        state_dict = super().state_dict()
        sched = self.lr_scheduler
        state_dict["adamop"] = {
            "num_update": self.num_update,
            "lr_scheduler": None if sched is None else {
                "class": type(sched).__name__, "state": copy.deepcopy(sched.__getstate__())}}
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` (or ``torch.optim.Adam``'s), checked whole before anything
        changes. Without the ``"adamop"`` entry (a state dict that went through
        ``ZeroRedundancyOptimizer`` or ``torch.distributed.checkpoint``), ``num_update`` is the
        largest loaded count and the scheduler keeps its state (MXNet's schedulers catch up from
        ``num_update`` alone)."""
        loaded = _load.check(self, state_dict)
        super().load_state_dict(loaded.state_dict)
        _load.finish(self, loaded)
        self._unused.clear()

    # ---- MXNet checkpoints -----------------------------------------------------------------
    @classmethod
    def from_mxnet(cls, params: Any, states: Any, *, optimizer: Any = None,
                   param_dict: dict | None = None) -> Adam:
        """An optimizer that continues an MXNet run bit for bit, from MXNet's optimizer state.

        Args:
            params: the torch parameter of each MXNet index: a list (index ``i`` is
                ``params[i]``: a Gluon Trainer numbers its parameters in sorted-name order, a
                Module in its argument order) or a dict ``{index: parameter}``. Load the weights
                into them first (from the ``.params`` file).
            states: MXNet's optimizer state: a ``.states`` file's path or bytes (read with
                ``adamop.states``), an ``adamop.optimizer.Updater``, or what
                ``adamop.states.loads`` returns (a dict index -> state, or ``(states,
                optimizer)``).
            optimizer: the MXNet optimizer (``adamop.optimizer.create("adam", ...)`` built as
                the MXNet run built it) when ``states`` holds none (``Module.save_checkpoint``
                writes the states only; MXNet then counts again from ``begin_num_update``, and so
                does this optimizer).
            param_dict: index -> an object with ``lr_mult`` and ``wd_mult`` (Gluon Parameters):
                what ``Trainer.load_states`` gives MXNet's optimizer; by default MXNet's tables.

        Returns:
            The optimizer: its hyperparameters, scheduler (a copy, with its state), counts and
            ``num_update`` are MXNet's; indices with the same multipliers in a row share a
            param group, in index order (MXNet's order of updates).

        Raises:
            TypeError, ValueError: a state that does not fit its parameter (shape, dtype,
                master copy), an index with a state but no parameter, or a bad argument.
        """
        from ._mxnet import from_mxnet
        return from_mxnet(cls, params, states, optimizer=optimizer, param_dict=param_dict)

    # ---- pickling (copy.deepcopy, multiprocessing) -----------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(multi_precision=self.multi_precision, lr_scheduler=self.lr_scheduler,
                     begin_num_update=self.begin_num_update, num_update=self.num_update)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._fresh_attributes()


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and a == b)
