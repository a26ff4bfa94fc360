"""The README's code blocks and the docstring examples run as tests, so the docs cannot rot."""
from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
DOCTEST_MODULES = ["adamop.api", "adamop.storage", "adamop.sparse",
                   "adamop.optimizer", "adamop.optimizer.adam", "adamop.optimizer.updater",
                   "adamop.lr_scheduler", "adamop.sym.build"]


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "readme"})


def test_readme_symbolic_example_trains(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    block = next(b for b in BLOCKS if "sym.Group" in b)
    exec(compile(block, "README.md symbolic block", "exec"), {"__name__": "readme"})
    loss = float(capsys.readouterr().out.split("loss")[-1])
    assert loss < 0.01   # starts near 6: the graph really trains the model


def test_readme_training_example_trains(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    block = next(b for b in BLOCKS if "get_updater" in b)
    exec(compile(block, "README.md training block", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert out.startswith("updates 160 lr 0.025 ")   # 160 steps, the rate halved twice
    assert float(out.split("loss")[-1]) < 1e-5       # starts near 6: it really trains


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failed == 0 and attempted > 0, (failed, attempted)
