"""Fuzzing ``adamop.sym.load_json`` (hypothesis, derandomised in the ``ci`` profile: a fixed seed
and a fixed number of examples): mutated real MXNet graphs, generated JSON, deep nesting, huge
numbers and odd Unicode. Whatever the text, ``load_json`` returns a Symbol or raises
TypeError/ValueError, never anything else, and in bounded time; a Symbol it returns writes text
that reads back to the same text (adamop's own output always round-trips).

Budget (profile ``ci``): about 15 s on the 2-core development machine.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from adamop import sym

SEEDS = [p.read_text(encoding="utf-8") for p in sorted((DATA / "json_dev").glob("*.json"))]
PER_TEXT_S = 5.0     # generous on a loaded 2-core machine; a real graph loads in milliseconds
# Characters that matter to a JSON reader or to dmlc, and Unicode that is easy to get wrong.
ODD_CHARS = list('{}[]",:\\/ \t\r\n0123456789-+.eE') + [
    "\x00", "\x01", "\x1f", "\x7f", "\u00e9", "\u2028", "\ufeff", "\ud800", "\udfff",
    "\U0001f600", "u", "null", "true", "NaN", "Infinity", "1" * 5000, "[" * 3000, "\\u0000",
    "\\ud800", '\\"', "adam_update", "null"]


def _examples(n: int) -> int:
    return n if settings.get_current_profile_name() == "ci" else settings.default.max_examples


def check(text: str) -> None:
    """The fuzz property for one text."""
    start = time.perf_counter()
    try:
        s = sym.load_json(text)
    except (TypeError, ValueError):
        s = None
    if s is not None:
        out = s.tojson()
        assert sym.load_json(out).tojson() == out
        s.list_arguments(), s.list_auxiliary_states(), s.list_outputs()
    elapsed = time.perf_counter() - start
    assert elapsed < PER_TEXT_S, f"load_json took {elapsed:.1f} s on {len(text)} characters"


# ---- strategies ------------------------------------------------------------------------------
@st.composite
def text_mutations(draw) -> str:
    """A real graph's text with a few characters or slices inserted, deleted or replaced."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 8)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        piece = draw(st.one_of(st.sampled_from(ODD_CHARS), st.text(max_size=4)))
        if op == "insert":
            text = text[:i] + piece + text[i:]
        elif op == "delete":
            text = text[:i] + text[j:]
        elif op == "replace":
            text = text[:i] + piece + text[j:]
        else:
            text = text[:j] + text[i:j] * draw(st.integers(1, 50)) + text[j:]
    return text


json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
    st.text(alphabet=st.characters(codec=None), max_size=8),
    st.sampled_from(["null", "adam_update", "0.1", "", "w", "__shape__"]))
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


@st.composite
def structure_mutations(draw) -> str:
    """A real graph with one value anywhere replaced by generated JSON, written out again."""
    graph = json.loads(draw(st.sampled_from(SEEDS)))
    path = draw(st.sampled_from(list(_paths(graph))[1:]))
    replacement = draw(st.one_of(json_values, st.sampled_from(
        [-1, 2**63, 2**64, -2**63 - 1, "\x00", "\ud800", [[[[0]]]], {}, [], 1.5])))
    parent = graph
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = replacement
    return json.dumps(graph, ensure_ascii=draw(st.booleans()))


# ---- tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_real_graphs_load_and_round_trip(seed):
    s = sym.load_json(SEEDS[seed])
    assert s.list_outputs()
    check(SEEDS[seed])


@settings(max_examples=_examples(400))
@given(text_mutations())
def test_mutated_text(text):
    check(text)


@settings(max_examples=_examples(300))
@given(structure_mutations())
def test_mutated_structure(text):
    check(text)


@settings(max_examples=_examples(150))
@given(json_values.map(json.dumps))
def test_generated_json(text):
    check(text)


@pytest.mark.parametrize("text", [
    "[" * 1_000_000, "{\"a\": " * 200_000, '{"nodes": ' + "[" * 100_000,
    '{"nodes": [], "arg_nodes": [' + "9" * 100_000 + '], "heads": []}',
    '{"nodes": [], "arg_nodes": [1e' + "9" * 5000 + '], "heads": []}',
    '"' + "\\ud800" * 10_000 + '"', "\ufeff" + SEEDS[0], SEEDS[0] + "\x00",
    '{"nodes": [' + ", ".join(['{"op": "null", "name": "w", "inputs": []}'] * 50_000) + "]}",
], ids=["deep_list", "deep_object", "deep_nodes", "long_int", "long_exponent", "surrogates",
        "bom", "trailing_nul", "many_nodes"])
def test_hostile_texts(text):
    check(text)


def test_load_reads_files_only_as_utf8_text(tmp_path: Path):
    bad = tmp_path / "latin1.json"
    bad.write_bytes('{"nodes": [{"op": "null", "name": "\u00e9", "inputs": []}], '
                    '"arg_nodes": [0], "heads": [[0, 0, 0]]}'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.json is not UTF-8 text \(byte 35: "):
        sym.load(str(bad))
    bad.write_bytes(bad.read_bytes().replace(b"\xe9", "\u00e9".encode()))
    assert sym.load(bad).name == "\u00e9"
