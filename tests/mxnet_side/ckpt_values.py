"""A JSON-able form of optimizer attributes, shared by the MXNet side and the tests (no imports:
it runs in both venvs). Int keys, tuples and float bits stay distinguishable."""


def plain(x):
    if isinstance(x, dict):
        return {"dict": [[plain(k), plain(v)] for k, v in x.items()]}
    if isinstance(x, (list, tuple)):
        return {type(x).__name__: [plain(v) for v in x]}
    if isinstance(x, float):
        return {"float": repr(x)}
    if x is None or isinstance(x, (bool, int, str)):
        return x
    name = getattr(type(x), "mxnet_class", None) or f"{type(x).__module__}.{type(x).__name__}"
    state = x.__getstate__() if hasattr(type(x), "mxnet_class") else vars(x)
    return {"object": name, "attrs": plain(state)}
