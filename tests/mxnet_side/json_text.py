"""MXNet 1.9.1 side of the symbol-text tests (runs in the MXNet venv, see mxnet_oracle.py).

``python json_text.py in.npz out.npz``. ``__meta__`` is a list of symbol JSON texts; each is
loaded with ``mx.sym.load_json`` and the meta written back holds, per text, either
``{"names": [...], "attrs": {name: attrs}, "tojson": text}`` or ``{"error": first line}``.
"""
import json
import sys

import mxnet as mx
import numpy as np


def main(src, dst):
    with np.load(src, allow_pickle=False) as z:
        texts = json.loads(str(z["__meta__"]))
    out = []
    for text in texts:
        try:
            s = mx.sym.load_json(text)
        except mx.base.MXNetError as exc:
            out.append({"error": str(exc).splitlines()[0]})
            continue
        internals = s.get_internals()
        out.append({"names": internals.list_outputs(),
                    "attrs": {k: v for k, v in s.attr_dict().items()},
                    "tojson": s.tojson()})
    np.savez(dst, __meta__=np.array(json.dumps(out)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
