"""The dmlc-core float32/bool parser and the kernel scalars, against what MXNet 1.9.1 parsed.

Expected values come from MXNet only (the golden file's 59 ``param_parse`` probes are replayed in
``test_golden.py``). The tables below were obtained by running MXNet 1.9.1 (CPU pip build) once
with the lr probe of the golden generator (w=0, g=0, m=1, v=0, beta1=beta2=1, epsilon=1, so
out = -lr) and hard-coding the float32 bit pattern it printed (or the error it raised).
"""
from __future__ import annotations

import numpy as np
import pytest

from adamop import AdamParams
from adamop.params import dmlc_parse_bool, dmlc_parse_float32


def bits(x) -> int:
    return int(np.float32(x).view(np.uint32))


def test_documented_example_is_not_numpy_rounding():
    # SPEC B §1.1 (verified on MXNet): dmlc gives 1.3340153694152832, np.float32 1.334015250...
    got = dmlc_parse_float32("lr", 1.3340153098106382)
    assert float(got) == 1.3340153694152832
    assert float(np.float32(1.3340153098106382)) == 1.3340152502059937
    assert got != np.float32(1.3340153098106382)


# str -> float32 bits MXNet 1.9.1 parsed for lr (printed by MXNet, see the module docstring).
MXNET_LR = {
    "3.4e38": 2139081120,            # exponent 38, significand <= 3.402823466: accepted
    "3.4e+38": 2139081120,
    "1e+38": 2123789978,
    "9.999999e37": 2123789977,
    "1.2e-38": 8563486,
    "1.17549435e-38": 8388607,       # divides into a float32 subnormal
    "1.1754944e-38": 8388608,
    "+0.5": 1056964608,              # leading '+'
    " 0.5": 1056964608,              # leading whitespace is skipped
    "\t0.5": 1056964608,
    ".85": 1062836634,               # no integer part
    "5.": 1084227584,                # no fraction digits
    "1E-3": 981668463,               # upper-case exponent
    "1e-3": 981668463,
    "2.5E+2": 1132068864,
    "0.1e1": 1065353216,
    "1e": 1065353216,                # a bare 'e' is consumed, exponent 0
    "0.12345678901234567890123": 1039980266,   # > 19 fraction digits: the rest ignored
    "1.00000000000000000001234": 1065353216,
    "1.5f": 1069547520,              # 'f' suffix
    "0.5F": 1056964608,
    "-1.5e-5": 3078334594,
    "123456789012": 1374024905,      # integer part through uint64 -> float
    "4.5225262085222267e-05": 943566914,
    "inf": 2139095040,
    "Infinity": 2139095040,
    "-inf": 4286578688,
}
# Strings MXNet 1.9.1 rejected, with the start of its message.
MXNET_LR_ERRORS = {
    "3.5e38": "Out of range value",
    "3.4028236e38": "Out of range value",
    "1e-38": "Out of range value",           # below FLT_MIN at exponent 38
    "1e-39": "Out of range value",           # exponent > 38, even for a would-be subnormal
    "1e40": "Out of range value",
    "abc": "Invalid Parameter format",
    "": "Invalid Parameter format",
    "True": "Invalid Parameter format",      # str(True): not a float for dmlc
    "0.5 ": "Some trailing characters",
}


@pytest.mark.parametrize("text", list(MXNET_LR), ids=repr)
def test_parse_matches_mxnet(text):
    assert bits(dmlc_parse_float32("lr", text)) == MXNET_LR[text]


@pytest.mark.parametrize("text", ["nan", "NaN"])
def test_parse_nan(text):
    # MXNet parsed both to a NaN (the probe cannot observe a NaN's sign bit).
    assert np.isnan(dmlc_parse_float32("lr", text))


def test_3_402823466e38_overflows_to_inf_in_mxnet():
    # Significand equal to dmlc's limit passes the range check, then the float32 scale overflows:
    # MXNet's probe printed inf.
    assert np.isposinf(dmlc_parse_float32("lr", "3.402823466e38"))


@pytest.mark.parametrize("text", list(MXNET_LR_ERRORS), ids=repr)
def test_parse_rejects_like_mxnet(text):
    with pytest.raises(ValueError, match=r"\blr\b") as info:
        dmlc_parse_float32("lr", text)
    kind = MXNET_LR_ERRORS[text]
    expected = {"Out of range value": "Out of range",
                "Invalid Parameter format": "expected a float",
                "Some trailing characters": "trailing characters"}[kind]
    assert expected in str(info.value)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", float("inf"), float("nan"),
                                   "3.402823466e38"], ids=repr)
def test_non_finite_parses_but_adam_params_refuses(value):
    dmlc_parse_float32("epsilon", value)   # dmlc accepts it ...
    with pytest.raises(ValueError, match=r"epsilon=.*not finite"):
        AdamParams.from_kwargs({"lr": 0.1, "epsilon": value})   # ... adamop does not (SPEC A.5)


# MXNet 1.9.1's bool parser: these passed as lazy_update, the others raised
# "Invalid Parameter format for lazy_update expect boolean".
@pytest.mark.parametrize("text,value", [("TRUE", True), ("true", True), ("True", True),
                                        ("False", False), ("FALSE", False), ("0", False),
                                        ("1", True), (True, True), (False, False), (0, False),
                                        (1, True)])
def test_parse_bool_accepts(text, value):
    assert dmlc_parse_bool("lazy_update", text) is value


@pytest.mark.parametrize("text", ["maybe", "yes", "2", " true", "1.0", 1.0])
def test_parse_bool_rejects(text):
    with pytest.raises(ValueError, match=r"lazy_update.*expected a boolean"):
        dmlc_parse_bool("lazy_update", text)


# ---- scalars as the kernel sees them: static_cast<DType>(float32) ----------------------------
# MXNet 1.9.1 printed these (g=0, m=1, lr=0 -> new m = beta1; g=0, v=1 -> new v = beta2).
def test_scalars_float64_widen_the_float32_value():
    s = AdamParams.from_kwargs({"lr": 0.1}).scalars(np.float64)
    assert s.beta1 == 0.8999999761581421 and s.beta1 != 0.9
    assert s.beta2 == 0.9990000128746033
    assert s.beta1.dtype == np.float64


def test_scalars_float16_round():
    s = AdamParams.from_kwargs({"lr": 0.1}).scalars(np.float16)
    assert float(s.beta1) == 0.89990234375
    assert float(s.beta2) == 0.9990234375
    # MXNet: w=g=m=v=0, lr=1 gives NaN in float16 (0/(0+eps) with eps rounded to 0), 0 in float32.
    assert s.epsilon == 0 and s.epsilon.dtype == np.float16
    assert AdamParams.from_kwargs({"lr": 0.1}).scalars(np.float32).epsilon > 0


def test_scalars_float64_use_the_dmlc_parse():
    s = AdamParams.from_kwargs({"lr": "1.3340153098106382"}).scalars(np.float64)
    assert s.lr == 1.3340153694152832


# MXNet 1.9.1, g=3e38, beta1=0: the new m was 0.0 for clip_gradient '-0.0' and '0' (clipping on)
# and 3e38 for '-1' and '-1e-30' (clipping off).
@pytest.mark.parametrize("clip,on", [("-0.0", True), (-0.0, True), ("0", True), (1.0, True),
                                     ("-1", False), (-1, False), ("-1e-30", False)])
def test_clip_flag(clip, on):
    assert AdamParams.from_kwargs({"lr": 0.1, "clip_gradient": clip}).scalars(np.float32).clip is on


def test_defaults_are_correctly_rounded_constants():
    p = AdamParams.from_kwargs({"lr": 0.1})
    assert bits(p.beta1) == 1063675494 and bits(p.beta2) == 1065336439   # golden '0.9', '0.999'
    assert bits(p.epsilon) == 841731191                                   # golden '1e-08'
    assert p.given == {"lr": "0.1"}


def test_given_keeps_strings_and_skips_none():
    p = AdamParams.from_kwargs({"lr": 0.5, "beta1": None, "lazy_update": False, "wd": "0.01"})
    assert p.given == {"lr": "0.5", "lazy_update": "False", "wd": "0.01"}
    assert p.lazy_update is False and p.beta1 == np.float32(0.9)


@pytest.mark.parametrize("name", ["wd", "clip_gradient", "epsilon", "rescale_grad"])
def test_scalars_compare_by_their_bits(name):
    """-0.0 == 0.0 as floats, but the kernels give different bits for them (w * -0.0 is -0.0),
    so Scalars, which caches may be keyed on, must tell them apart; equal bits compare equal."""
    from adamop import AdamParams
    f32 = np.dtype("float32")
    neg = AdamParams.from_kwargs({"lr": 0.1, name: "-0.0"}).scalars(f32)
    pos = AdamParams.from_kwargs({"lr": 0.1, name: "0.0"}).scalars(f32)
    same = AdamParams.from_kwargs({"lr": 0.1, name: "0"}).scalars(f32)
    assert neg != pos and pos == same and hash(pos) == hash(same)
    assert len({neg: 1, pos: 2, same: 3}) == 2
    assert pos != AdamParams.from_kwargs({"lr": 0.1, name: "0.0"}).scalars(np.dtype("float64"))


def test_parsed_parameters_are_reused_only_for_values_that_parse_alike():
    """from_kwargs keeps each distinct set of keyword values it parsed. Values equal in Python
    but not in what MXNet parses (``str`` of each) must not share an entry."""
    from adamop import params as params_mod

    params_mod._PARSED.clear()
    first = AdamParams.from_kwargs({"lr": 0.01, "wd": 0.0})
    assert AdamParams.from_kwargs({"lr": 0.01, "wd": 0.0}) is first            # reused
    neg = AdamParams.from_kwargs({"lr": 0.01, "wd": -0.0})
    assert neg is not first and np.signbit(neg.wd) and not np.signbit(first.wd)
    assert AdamParams.from_kwargs({"lr": 0.01, "wd": 0}).given["wd"] == "0"      # int, not float
    assert AdamParams.from_kwargs({"lr": 0.01, "lazy_update": True}).lazy_update is True
    with pytest.raises(ValueError, match="expected a float"):                   # str(True)
        AdamParams.from_kwargs({"lr": True})
    with pytest.raises(ValueError, match="expected a float"):                   # not cached
        AdamParams.from_kwargs({"lr": True})
    one = AdamParams.from_kwargs({"lr": 1})
    assert one.lr == np.float32(1) and one.given["lr"] == "1"
    np_lr = AdamParams.from_kwargs({"lr": np.float32(0.01)})                   # parsed each time
    assert np_lr is not AdamParams.from_kwargs({"lr": np.float32(0.01)})
    assert np_lr.given["lr"] == str(np.float32(0.01))
