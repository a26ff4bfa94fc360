"""MXNet 1.9.1 as a peer: a long-lived subprocess in its side venv (``mxnet_side.py``), driven
step by step so its timings interleave with the in-process runners."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict
from pathlib import Path

from .cases import LR, Case
from .peers import Runner

SIDE = Path(__file__).with_name("mxnet_side.py")


class MXNetPeer:
    """The MXNet interpreter at ``python``; ``runner(case)`` gives a Runner or a skip reason."""

    def __init__(self, python: str) -> None:
        if not Path(python).exists():
            raise FileNotFoundError(f"--mxnet-python {python}: no such interpreter; pass the "
                                    f"python of a venv with mxnet==1.9.1 installed")
        # Passive OpenMP waiting: spinning MXNet threads would steal this 2-core machine's
        # cores from the runners timed between MXNet's steps (measured: 0.03 ms steps became 8 ms)
        env = dict(os.environ, MXNET_STORAGE_FALLBACK_LOG_VERBOSE="0", OMP_WAIT_POLICY="PASSIVE",
                   KMP_BLOCKTIME="0")
        self.proc = subprocess.Popen([python, str(SIDE)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=env)
        self.version = "unknown"   # asked now, for the machine description written first
        try:
            self.version = self._ask({"op": "version"})["version"]
        except (RuntimeError, KeyError, ValueError, OSError):
            pass   # a side process that cannot serve says why at the first case

    def _ask(self, msg: dict) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the MXNet side process exited")
        return json.loads(line)

    def runner(self, case: Case) -> Runner | str:
        reply = self._ask({"op": "setup", "case": asdict(case), "lr": LR})
        if not reply["ok"]:
            return reply["error"]
        self.version = reply["version"]
        kind = {"lazy": " lazy", "std": " std"}.get(case.kind, "")

        def timer(calls: int) -> float:
            r = self._ask({"op": "time", "calls": calls})
            if not r["ok"]:
                raise RuntimeError(f"MXNet timing failed: {r['error']}")
            return r["seconds"]
        return Runner(f"mxnet {self.version} adam_update{kind}", "peer", lambda: None,
                      case.bytes, timer=timer)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._ask({"op": "quit"})
            except (RuntimeError, BrokenPipeError, ValueError):
                pass
            self.proc.wait(timeout=30)
