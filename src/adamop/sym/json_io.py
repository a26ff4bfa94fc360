"""MXNet symbol JSON: written exactly as MXNet 1.9.1 writes it, read as leniently as it reads it.

The writer follows dmlc-core's ``JSONWriter`` (``include/dmlc/json.h``), which decides the layout:
objects and arrays are multi-line except arrays of at most 10 plain values and maps with at most
one entry; items are separated by ``", "`` before the line break (hence the trailing spaces);
indentation is two spaces per open scope; string values escape only ``\\r \\n \\\\ \\t \\"``
and write every other character raw, control characters included. dmlc writes keys raw too, which
breaks the file for a key holding one of those five; adamop escapes keys as values (the same text
for every other key, and dmlc's reader reads it). The node layout and the graph fields are nnvm's
``JSONGraph``.

The reader takes what dmlc's reader takes (raw control characters in strings) and standard JSON
escapes besides. Text that neither MXNet nor a file can hold is refused on both sides: a NUL (the C
API ends the string there) and a lone surrogate (not encodable as UTF-8).
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from ..ops import lookup
from .graph import Entry, Node, topo_order

__all__ = ["to_json", "from_json", "check_text"]

MXNET_VERSION = 10901          # written as "mxnet_version": ["int", 10901], as MXNet 1.9.1 does
_ESCAPES = {"\r": "\\r", "\n": "\\n", "\\": "\\\\", "\t": "\\t", '"': '\\"'}
_GRAPH_KEYS = {"nodes", "arg_nodes", "node_row_ptr", "heads", "attrs"}
_NODE_KEYS = {"op", "name", "inputs", "attrs", "attr", "param", "control_deps", "subgraphs"}


# ---- writing ---------------------------------------------------------------------------------
def check_text(s: str, what: str) -> str:
    """``s`` if a symbol file can hold it: no NUL (MXNet's C API would end the string there) and
    no lone surrogate (not encodable as UTF-8); else a ValueError naming ``what``."""
    if "\0" in s:
        raise ValueError(f"{what} {s!r} holds a NUL character; MXNet ends its strings there, so "
                         f"it cannot be stored in a symbol file; remove it")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} {s!r} holds the lone surrogate {s[exc.start]!r}, which is not "
                         f"valid Unicode and cannot be written as UTF-8; remove it") from None
    return s


def _string(s: str, what: str) -> str:
    check_text(s, what)
    return '"' + "".join(_ESCAPES.get(c, c) for c in s) + '"'


def _scope(items: list[str], depth: int, multi_line: bool, brackets: str) -> str:
    """dmlc's BeginArray/BeginObject ... End: ``depth`` scopes are open outside this one."""
    if not items:
        return brackets
    if not multi_line:
        return brackets[0] + ", ".join(items) + brackets[1]
    pad = "\n" + "  " * (depth + 1)
    return brackets[0] + ", ".join(pad + it for it in items) + "\n" + "  " * depth + brackets[1]


def _ints(values: list[int], depth: int) -> str:
    return _scope([str(v) for v in values], depth, len(values) > 10, "[]")


def _entries(entries: list[tuple[int, int, int]], depth: int) -> str:
    return _scope([f"[{n}, {i}, {v}]" for n, i, v in entries], depth, len(entries) > 10, "[]")


def _map(attrs: dict[str, str], depth: int, node: str) -> str:
    items = [f'{_string(k, f"attribute name of {node!r}")}: '
             f'{_string(attrs[k], f"attribute {k!r} of {node!r}")}' for k in sorted(attrs)]
    return _scope(items, depth, len(items) > 1, "{}")


def to_json(heads: Sequence[Entry]) -> str:
    """The text of ``mx.sym.Symbol.tojson()`` for the graph with these heads."""
    nodes = topo_order(heads)
    index = {id(n): i for i, n in enumerate(nodes)}

    def entry(e: Entry) -> tuple[int, int, int]:
        return index[id(e.node)], e.index, e.version

    written = []
    for n in nodes:
        fields = [f'"op": "{"null" if n.is_variable else n.op.name}"',
                  f'"name": {_string(n.name, "node name")}']
        if n.attrs:
            fields.append(f'"attrs": {_map(n.attrs, 3, n.name)}')
        fields.append(f'"inputs": {_entries([entry(e) for e in n.inputs], 3)}')
        written.append(_scope(fields, 2, True, "{}"))
    row_ptr = [0]
    for n in nodes:
        row_ptr.append(row_ptr[-1] + (1 if n.is_variable else n.op.num_outputs))
    graph = [f'"nodes": {_scope(written, 1, True, "[]")}',
             f'"arg_nodes": {_ints([i for i, n in enumerate(nodes) if n.is_variable], 1)}',
             f'"node_row_ptr": {_ints(row_ptr, 1)}',
             f'"heads": {_entries([entry(e) for e in heads], 1)}',
             f'"attrs": {{"mxnet_version": ["int", {MXNET_VERSION}]}}']
    return _scope(graph, 0, True, "{}")


# ---- reading ---------------------------------------------------------------------------------
def _fail(msg: str) -> ValueError:
    return ValueError(f"load_json: {msg}")


def _show(raw: Any) -> str:
    """A short JSON rendering of a value for an error message."""
    try:
        text = json.dumps(raw)
    except (RecursionError, ValueError):
        text = f"a deeply nested {type(raw).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def _int(text: str) -> int:
    """JSON integers (node, output and version numbers) that fit an int64; a longer one would
    also trip Python's limit on converting long digit strings."""
    if len(text.lstrip("-")) > 19 or not -2**63 <= int(text) < 2**63:
        raise _fail(f"the integer {text[:24]}{'...' if len(text) > 24 else ''} ({len(text)} "
                    f"characters) is out of range; symbol JSON integers are node, output and "
                    f"version numbers, at most 2**63 - 1")
    return int(text)


def _entry(raw: Any, where: str, limit: int, nodes: list[Node], forward_msg: str) -> Entry:
    """A ``[node, index]`` or ``[node, index, version]`` entry pointing below ``limit``."""
    if (not isinstance(raw, list) or len(raw) not in (2, 3)
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in raw)):
        raise _fail(f"{where} is {_show(raw)}; expected [node, index] or "
                    f"[node, index, version] with non-negative integers")
    node_id, index = raw[0], raw[1]
    version = raw[2] if len(raw) == 3 else 0
    if node_id >= limit:
        raise _fail(f"{where} refers to node {node_id}, {forward_msg}")
    node = nodes[node_id]
    n_out = 1 if node.is_variable else node.op.num_outputs
    if index >= n_out:
        raise _fail(f"{where} asks for output {index} of node {node_id} ({node.name!r}), which "
                    f"has {n_out} output(s); output index out of range")
    return Entry(node, index, version)


def _attrs(raw: dict, name: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for field in ("param", "attr", "attrs"):   # v0.8 files use "param"/"attr"
        value = raw.get(field, {})
        if not isinstance(value, dict):
            raise TypeError(f"load_json: node {name!r}: {field!r} must be an object of string "
                            f"values, got {type(value).__name__}")
        for k, v in value.items():
            if not isinstance(v, str):
                raise TypeError(f"load_json: node {name!r}: attribute {k!r} is "
                                f"{_show(v)}; MXNet stores attribute values as strings, "
                                f"write it as {_show(_show(v))}")
            check_text(k, f"load_json: node {name!r}: attribute name")
            merged[k] = check_text(v, f"load_json: node {name!r}: attribute {k!r}")
    return merged


def _node(raw: Any, i: int, nodes: list[Node], total: int) -> Node:
    if not isinstance(raw, dict):
        raise _fail(f"nodes[{i}] must be an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _NODE_KEYS)
    if unknown:
        raise _fail(f"nodes[{i}] has unknown field(s) {unknown}; node fields are op, name, "
                    f"attrs, inputs")
    for key in ("op", "name", "inputs"):
        if key not in raw:
            raise _fail(f"nodes[{i}] lacks the required field {key!r}")
    op, name, inputs = raw["op"], raw["name"], raw["inputs"]
    if not isinstance(name, str) or not isinstance(op, str) or not isinstance(inputs, list):
        raise _fail(f"nodes[{i}]: op and name must be strings and inputs a list")
    check_text(name, f"load_json: nodes[{i}]: name")
    for key in ("control_deps", "subgraphs"):
        if raw.get(key):
            raise _fail(f"node {name!r} has {key}, which adamop does not support")
    attrs = _attrs(raw, name)
    forward_msg = (f"but a node may only use earlier nodes (an input that points forward or "
                   f"out of range; {total} nodes in the graph)")
    entries = [_entry(e, f"node {name!r} (nodes[{i}]) input {k}", i, nodes, forward_msg)
               for k, e in enumerate(inputs)]
    if op == "null":
        if entries:
            raise _fail(f"variable {name!r} (nodes[{i}]) has inputs; variables have none")
        return Node(None, name, attrs)
    opdef = lookup(op, name)
    if len(entries) != len(opdef.inputs):
        raise _fail(f"node {name!r}: operator {op} expects {len(opdef.inputs)} inputs "
                    f"({', '.join(opdef.inputs)}), but got {len(entries)} instead")
    for k in opdef.mutate_inputs:
        if not entries[k].node.is_variable:
            raise _fail(f"node {name!r}: input {opdef.inputs[k]} is mutated in place, so it must "
                        f"be a variable, not the output of {entries[k].node.name!r}")
    return Node(opdef, name, attrs, entries, opdef.parse(attrs, name))


def from_json(text: str) -> list[Entry]:
    """The heads of the graph in MXNet symbol JSON (also v0.8-style files: 2-element entries, no
    node_row_ptr)."""
    if not isinstance(text, str):
        raise TypeError(f"load_json expects the JSON text as a str, got {type(text).__name__}; "
                        f"use adamop.sym.load(path) for a file")
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise _fail(f"the text holds a NUL character (line {line}); MXNet reads symbol JSON as "
                    f"a C string, which ends there")
    try:   # strict=False: raw control characters in strings, which dmlc writes and reads
        graph = json.loads(text, strict=False, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise _fail(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise _fail("the JSON is nested too deeply to be a symbol graph (a graph nests four "
                    "levels: graph, nodes, node, inputs)") from None
    if not isinstance(graph, dict):
        raise _fail(f"expected a JSON object with nodes, arg_nodes and heads, got "
                    f"{type(graph).__name__}")
    unknown = sorted(set(graph) - _GRAPH_KEYS)
    if unknown:
        raise _fail(f"unknown field(s) {unknown}; a symbol file has {sorted(_GRAPH_KEYS)}")
    for key in ("nodes", "arg_nodes", "heads"):
        if not isinstance(graph.get(key), list):
            raise _fail(f"the field {key!r} is missing or not a list")
    raw_nodes = graph["nodes"]
    nodes: list[Node] = []
    for i, raw in enumerate(raw_nodes):
        nodes.append(_node(raw, i, nodes, len(raw_nodes)))
    for key in ("arg_nodes", "node_row_ptr"):
        values = graph.get(key, [])
        if not isinstance(values, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise _fail(f"{key} must be a list of non-negative integers")
    if any(v >= len(nodes) for v in graph["arg_nodes"]):
        raise _fail(f"arg_nodes refers to a node beyond the {len(nodes)} nodes of the graph")
    if not isinstance(graph.get("attrs", {}), dict):
        raise _fail("the graph's attrs must be an object")
    if not graph["heads"]:
        raise _fail("heads is empty; a symbol needs at least one output")
    return [_entry(e, f"heads[{k}]", len(nodes), nodes, f"but the graph has {len(nodes)} nodes "
                   f"(out of range)") for k, e in enumerate(graph["heads"])]
