"""Backend registry and selection: which kernel runs a call, and why.

Backends are registered explicitly (no discovery) and loaded on first use; nothing is imported or
compiled when ``adamop`` is imported. An automatic choice takes the best available backend for
the arrays' device and falls back quietly; an explicit ``backend=`` that cannot run raises
:class:`BackendUnavailableError` with the reason.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

__all__ = ["KernelSpec", "BackendUnavailableError", "register", "registry", "select", "explain"]


class BackendUnavailableError(ValueError):
    """An explicitly requested backend cannot run these arrays (the message says why)."""


@dataclass(frozen=True)
class KernelSpec:
    """A backend: where it runs, what it needs, and the module that holds its kernels.

    The module defines ``adam_dense``, ``adam_rows`` and ``adam_dense_batch`` with the contract
    of :mod:`adamop.reference` (the rules of each kernel path are handed in), over NumPy arrays
    (``array_library='numpy'``) or torch tensors (``'torch'``); a batch holds addresses only.
    """

    name: str
    module: str
    devices: tuple[str, ...]
    array_library: str
    priority: int
    requires: tuple[str, ...] = ()
    probe: Callable[[], str | None] | None = field(default=None, compare=False)
    description: str = ""
    # (device, environment variable): where the backend also runs in an interpreter, switched on
    # by that variable (=1) before the backend is imported. Slow, for checking kernels without
    # their hardware: it is used only when asked for by name, never chosen automatically.
    interpreter: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.array_library not in ("numpy", "torch"):
            raise ValueError(f"KernelSpec {self.name}: array_library must be 'numpy' or 'torch'")
        if not self.devices:
            raise ValueError(f"KernelSpec {self.name}: needs at least one device")

    def unavailable_reason(self, device: str | None = None) -> str | None:
        """None if the backend can be loaded here (on ``device``, if given), else why not
        (without importing it)."""
        missing = self._missing_package()
        if missing is None and self.probe is not None and not (device and self.interpreted(device)):
            return self.probe()
        return missing

    def _missing_package(self) -> str | None:
        for package in self.requires:
            if importlib.util.find_spec(package) is None:
                return f"the package {package!r} is not installed (pip install {package})"
        return None

    def interpreted(self, device: str) -> bool:
        """True if this process runs the backend in its interpreter on ``device``."""
        return (self.interpreter is not None and self.interpreter[0] == device
                and os.environ.get(self.interpreter[1]) == "1")

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


_REGISTRY: dict[str, KernelSpec] = {}
_BEST_FIRST: list[KernelSpec] = []


def register(spec: KernelSpec) -> KernelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"a backend named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    _BEST_FIRST[:] = sorted(_REGISTRY.values(), key=lambda s: -s.priority)
    return spec


def registry() -> list[KernelSpec]:
    """All registered backends, best first."""
    return list(_BEST_FIRST)


def _rejection(spec: KernelSpec, device: str, explicit: bool = False) -> str | None:
    if device in spec.devices:
        return spec.unavailable_reason()
    if spec.interpreted(device):
        return spec._missing_package() if explicit else (
            f"runs on {device} in its interpreter ({spec.interpreter[1]}=1) only when asked for "
            f"by name")
    return f"runs on {'/'.join(spec.devices)}, the arrays are on {device}"


def explain(device: str = "cpu") -> list[tuple[str, str | None]]:
    """(backend name, reason it cannot run on ``device`` or None) for every backend, best first."""
    return [(spec.name, _rejection(spec, device)) for spec in registry()]


def select(device: str, explicit: str | None = None) -> tuple[KernelSpec, ModuleType]:
    """The backend for arrays on ``device``: ``explicit`` if given, else ``$ADAMOP_BACKEND`` if
    set, else the best available one.

    A choice that succeeded is remembered (keyed also by ``$ADAMOP_BACKEND`` and
    ``$TRITON_INTERPRET``): finding packages and probing devices costs ~10 us a call, more than a
    small update, and their answers do not change while a process runs."""
    key = (device, explicit, os.environ.get("ADAMOP_BACKEND"), os.environ.get("TRITON_INTERPRET"),
           len(_REGISTRY))
    chosen = _CHOSEN.get(key)
    if chosen is None:
        chosen = _CHOSEN[key] = _select(device, explicit)
    return chosen


_CHOSEN: dict[tuple, tuple[KernelSpec, ModuleType]] = {}


def _select(device: str, explicit: str | None) -> tuple[KernelSpec, ModuleType]:
    source, fix = "", "Leave backend=None to choose automatically"
    if not explicit and os.environ.get("ADAMOP_BACKEND"):
        explicit = os.environ["ADAMOP_BACKEND"]
        source = " (from the environment variable ADAMOP_BACKEND)"
        fix = "Unset ADAMOP_BACKEND to choose automatically"
    if explicit:
        spec = _REGISTRY.get(explicit)
        if spec is None:
            raise BackendUnavailableError(
                f"unknown backend {explicit!r}{source}; expected one of {', '.join(_REGISTRY)} "
                f"(see `adamop info`)")
        reason = _rejection(spec, device, explicit=True)
        if reason is not None:
            raise BackendUnavailableError(
                f"backend {explicit!r}{source} cannot run these arrays: {reason}. {fix} (see "
                f"`adamop info`)")
        return spec, spec.load()
    reasons = []
    for spec in _BEST_FIRST:
        reason = _rejection(spec, device)
        if reason is None:
            try:
                return spec, spec.load()
            except Exception as exc:   # an automatic choice falls back quietly
                reason = f"failed to load: {exc}"
        reasons.append(f"{spec.name}: {reason}")
    raise BackendUnavailableError(f"no backend can run arrays on {device}: " + "; ".join(reasons))
