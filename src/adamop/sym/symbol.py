"""``Symbol``: a graph's heads, with MXNet's symbol methods (structure, inference, JSON, bind)."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

from .._files import write_atomically
from .executor import Executor
from .graph import HIDDEN_KEYS, Entry, Node, topo_order, variables
from .infer import infer
from .json_io import from_json, to_json

__all__ = ["Symbol", "load", "load_json"]


class Symbol:
    """A graph with one output (a variable or an ``adam_update`` node) or several (``Group``)."""

    def __init__(self, outputs: Sequence[Entry]):
        self._outputs = tuple(outputs)

    # ---- structure ---------------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        """The node's name; ``None`` for a group of several outputs."""
        return self._outputs[0].node.name if len(self._outputs) == 1 else None

    def _nodes(self) -> list[Node]:
        return topo_order(self._outputs)

    def _variables(self, kind: str) -> list[Node]:
        return variables(self._outputs, kind)

    def list_arguments(self) -> list[str]:
        """Variables the graph reads (weights and grads), in graph order."""
        return [n.name for n in self._variables("args")]

    def list_auxiliary_states(self) -> list[str]:
        """Variables an op mutates in place (mean and var), in graph order."""
        return [n.name for n in self._variables("aux")]

    def list_inputs(self) -> list[str]:
        """Every variable, in graph order."""
        return [n.name for n in self._variables("all")]

    def list_outputs(self) -> list[str]:
        """``<name>_output`` for an op, the variable's name for a variable."""
        return [e.node.name if e.node.is_variable else f"{e.node.name}_output"
                for e in self._outputs]

    def attr(self, key: str) -> str | None:
        """The attribute ``key`` of this (single-output) symbol's node, or None."""
        if len(self._outputs) != 1:
            return None
        return self._outputs[0].node.attrs.get(key)

    def list_attr(self) -> dict[str, str]:
        """The node's attributes (``{}`` for a group); some hidden ``__k__`` keys also as ``k``."""
        if len(self._outputs) != 1:
            return {}
        attrs = dict(self._outputs[0].node.attrs)
        for key in HIDDEN_KEYS:
            if f"__{key}__" in attrs:
                attrs[key] = attrs[f"__{key}__"]
        return attrs

    def get_internals(self) -> "Symbol":
        """A group of every node's output, in graph order."""
        return Symbol([Entry(n, 0, 0) for n in self._nodes()])

    def get_children(self) -> "Symbol | None":
        """The inputs of this symbol's node(s) as a group; None for a variable."""
        inputs = [e for out in self._outputs for e in out.node.inputs]
        return Symbol(inputs) if inputs else None

    def __len__(self) -> int:
        return len(self._outputs)

    def __iter__(self) -> Iterator["Symbol"]:
        return (Symbol([e]) for e in self._outputs)

    def __getitem__(self, index: int | str) -> "Symbol":
        if isinstance(index, str):
            names = self.list_outputs()
            if index not in names:
                raise ValueError(f"no output named {index!r}; outputs are {names}")
            index = names.index(index)
        return Symbol([self._outputs[index]])

    def __repr__(self) -> str:
        if len(self._outputs) == 1:
            return f"<Symbol {self.name}>"
        return f"<Symbol group [{', '.join(self.list_outputs())}]>"

    # ---- inference, JSON, execution (implemented in their own modules) -----------------------
    def infer_shape(self, *args: Any, **kwargs: Any) -> tuple[list, list, list]:
        """``(arg_shapes, out_shapes, aux_shapes)`` from the shapes given (by name or in
        ``list_arguments()`` order). One input of a node is enough; a conflict raises a
        ValueError naming the node and the input; a shape that stays unknown raises too."""
        return infer(self, "shape", args, kwargs, partial=False)

    def infer_shape_partial(self, *args: Any, **kwargs: Any) -> tuple[list, list, list]:
        """Like :meth:`infer_shape`, with ``None`` for the shapes that cannot be inferred."""
        return infer(self, "shape", args, kwargs, partial=True)

    def infer_type(self, *args: Any, **kwargs: Any) -> tuple[list, list, list]:
        """``(arg_types, out_types, aux_types)`` as numpy scalar types, like :meth:`infer_shape`."""
        return infer(self, "dtype", args, kwargs, partial=False)

    def infer_storage_type(self, *args: Any, **kwargs: Any) -> tuple[list, list, list]:
        """``(arg_stypes, out_stypes, aux_stypes)``; inputs not given are ``'default'``. The new
        weight takes the weight's storage type (SPEC B §3)."""
        return infer(self, "stype", args, kwargs, partial=False)

    def tojson(self) -> str:
        """The graph as MXNet 1.9.1's ``Symbol.tojson()`` writes it, character for character."""
        return to_json(self._outputs)

    def save(self, path: str) -> None:
        """Write :meth:`tojson` to ``path`` (``adamop.sym.load`` and ``mx.sym.load`` read it).

        The text is made and checked first, and the file is replaced atomically: a graph that
        cannot be written (a name holding a NUL or a lone surrogate) raises ValueError and leaves
        an existing file as it was.
        """
        write_atomically(path, self.tojson().encode("utf-8"))

    def bind(self, args: Any, aux_states: Any = None, *, backend: str | None = None) -> Executor:
        """An :class:`~adamop.sym.executor.Executor` over the given arrays (see there)."""
        return Executor(self, args, aux_states, backend=backend)

    def eval(self, *, backend: str | None = None, **arrays: Any) -> list:
        """Bind every input by name, run once and return the outputs (mean/var change in place)."""
        args = {k: arrays.pop(k) for k in self.list_arguments() if k in arrays}
        aux = {k: arrays.pop(k) for k in self.list_auxiliary_states() if k in arrays}
        if arrays:
            raise ValueError(f"eval got arrays for {sorted(arrays)}, which are not inputs of "
                             f"this graph; its inputs are {self.list_inputs()}")
        return self.bind(args, aux, backend=backend).forward()


def load_json(text: str) -> Symbol:
    """A Symbol from MXNet symbol JSON text (``mx.sym.load_json``)."""
    return Symbol(from_json(text))


def load(path: str) -> Symbol:
    """A Symbol from a symbol JSON file (``mx.sym.load``)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"load: {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
                         f"MXNet writes symbol files in UTF-8") from None
    return load_json(text)
