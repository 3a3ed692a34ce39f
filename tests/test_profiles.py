"""Optimization profiles: parsers, derivation (options, metadata, defaults), validation, selection."""

from __future__ import annotations

import pytest

from rnndeploy.engine.profiles import (
    DEFAULT_RANGES,
    Profile,
    ShapeRange,
    derive_profiles,
    engine_defaults,
    inputs_for_onnx,
    parse_dim_assignments,
    parse_range,
    parse_trtexec_shapes,
    profile_from_ranges,
    profiles_from_trtexec,
    select_profile,
    validate_profiles,
)
from rnndeploy.errors import ShapeError, UsageError
from rnndeploy.spec import TensorSpec

X = TensorSpec("x", "float32", ("batch", "seq", 8), "features", time_axis=1)
LENGTHS = TensorSpec("lengths", "int64", ("batch",), "lengths")
H0 = TensorSpec("h0", "float32", (2, "batch", 16), "state", optional=True)
MEM = TensorSpec("memory", "float32", ("batch", "src_seq", 32), "memory")


def test_parse_range():
    assert parse_range("1:8:32", "--batch") == (1, 8, 32)
    assert parse_range(" 4 ", "--batch") == (4, 4, 4)
    for bad, why in (("1:8", "MIN:OPT:MAX"), ("a:b:c", "MIN:OPT:MAX"), ("8:4:32", "min <= opt <= max"),
                     ("0:1:2", "1 <= min"), ("1:2:3:4", "MIN:OPT:MAX")):
        with pytest.raises(UsageError, match=why) as e:
            parse_range(bad, "--seq")
        assert "--seq" in str(e.value)


def test_parse_dim_assignments():
    assert parse_dim_assignments("batch=1:8:32, seq=1:128:1024", "--profile") == {"batch": (1, 8, 32), "seq": (1, 128, 1024)}
    with pytest.raises(UsageError, match="NAME=MIN:OPT:MAX"):
        parse_dim_assignments("batch:1:8:32", "--profile")
    with pytest.raises(UsageError, match="given twice"):
        parse_dim_assignments("seq=1,seq=2", "--profile")
    with pytest.raises(UsageError, match="no axis"):
        parse_dim_assignments(" , ", "--profile")


def test_parse_trtexec_shapes():
    assert parse_trtexec_shapes("x:1x1x8,lengths:1") == {"x": (1, 1, 8), "lengths": (1,)}
    assert parse_trtexec_shapes("'input:0':2x3, \"a,b\":4,scalar:") == {"input:0": (2, 3), "a,b": (4,), "scalar": ()}
    with pytest.raises(UsageError, match="given twice"):
        parse_trtexec_shapes("x:1x2,x:1x3")
    with pytest.raises(UsageError, match="is not DxDxD"):
        parse_trtexec_shapes("x:1xx2")
    with pytest.raises(UsageError, match="no input name"):
        parse_trtexec_shapes(":1x2")


def test_profiles_from_trtexec_repeated_and_opt_default():
    ps = profiles_from_trtexec(["x:1x1x8", "x:8x1x8"], ["x:1x64x8", "x:32x128x8"], ["x:1x2048x8", "x:256x512x8"])
    assert len(ps) == 2 and ps[1].shapes["x"] == ShapeRange((8, 1, 8), (32, 128, 8), (256, 512, 8))
    (p,) = profiles_from_trtexec(["x:1x1x8"], [], ["x:4x16x8"])
    assert p.shapes["x"].opt == (4, 16, 8)
    with pytest.raises(UsageError, match="once per profile"):
        profiles_from_trtexec(["x:1x1x8", "x:1x1x8"], [], ["x:4x16x8"])
    with pytest.raises(UsageError, match="name the same inputs"):
        profiles_from_trtexec(["x:1x1x8"], [], ["y:4x16x8"])


def test_profile_from_ranges_fills_fixed_axes_and_names_missing_ranges():
    p = profile_from_ranges([X, LENGTHS, H0], {"batch": (1, 8, 32), "seq": (1, 128, 1024)})
    assert p.shapes["x"] == ShapeRange((1, 1, 8), (8, 128, 8), (32, 1024, 8))
    assert p.shapes["lengths"] == ShapeRange((1,), (8,), (32,))
    assert p.shapes["h0"] == ShapeRange((2, 1, 16), (2, 8, 16), (2, 32, 16))
    with pytest.raises(UsageError) as e:
        profile_from_ranges([X, MEM], {"batch": (1, 8, 32), "seq": (1, 128, 1024)})
    assert "input 'memory' axis 1 is dynamic ('src_seq')" in str(e.value) and "--dim src_seq=MIN:OPT:MAX" in str(e.value)


def test_derive_profiles_precedence():
    ps, origin = derive_profiles([X])
    assert origin == "defaults" and ps[0].shapes["x"].max == (DEFAULT_RANGES["batch"][2], DEFAULT_RANGES["seq"][2], 8)
    ps, origin = derive_profiles([X], batch="1:2:4")
    assert origin == "--batch/--seq/--dim" and ps[0].shapes["x"].max == (4, DEFAULT_RANGES["seq"][2], 8)
    ps, origin = derive_profiles([X], profiles=["batch=1:1:1,seq=1:64:2048", "batch=8:32:256,seq=1:128:512"])
    assert origin == "--profile" and [p.shapes["x"].max for p in ps] == [(1, 2048, 8), (256, 512, 8)]
    ps, _ = derive_profiles([X], profiles=["batch=1:1:1"], seq="1:16:64")  # --seq fills what a profile leaves out
    assert ps[0].shapes["x"].max == (1, 64, 8)
    with pytest.raises(UsageError, match="no range was given"):
        derive_profiles([X], profiles=["batch=1:1:1"])
    ps, origin = derive_profiles([X], min_shapes=["x:1x1x8"], opt_shapes=["x:2x3x8"], max_shapes=["x:4x5x8"])
    assert origin == "trtexec shapes" and ps[0].shapes["x"].opt == (2, 3, 8)
    with pytest.raises(UsageError, match="cannot be combined"):
        derive_profiles([X], min_shapes=["x:1x1x8"], max_shapes=["x:4x5x8"], batch="1:2:3")


def test_derive_profiles_from_recipe_engine_metadata():
    recipe_engine = {"batch": "1:8:32", "seq": "1:50:512", "src_seq": None, "precision": "fp16", "workspace_mib": 512}
    ps, origin = derive_profiles([X, MEM], defaults=recipe_engine)
    assert origin == "model metadata"
    assert ps[0].shapes["x"] == ShapeRange((1, 1, 8), (8, 50, 8), (32, 512, 8))
    assert ps[0].shapes["memory"].max == (32, 512, 32)  # src_seq defaults to the seq range, as recipes say
    ps, _ = derive_profiles([X], defaults={"profiles": [{"batch": [1, 1, 1], "seq": [1, 64, 2048]}, {"batch": "8:32:256"}]})
    assert [p.shapes["x"].max for p in ps] == [(1, 2048, 8), (256, DEFAULT_RANGES["seq"][2], 8)]
    ps, origin = derive_profiles([X], seq="1:4:8", defaults=recipe_engine)  # options win over metadata, axis by axis
    assert origin == "--batch/--seq/--dim" and ps[0].shapes["x"].max == (32, 8, 8)
    with pytest.raises(UsageError, match=r"model metadata \[engine\] seq"):
        derive_profiles([X], defaults={"seq": "9:1:2"})


def test_engine_defaults_lookup_order():
    assert engine_defaults({"engine": {"seq": "1:2:3"}}, {}) == {"seq": "1:2:3"}
    assert engine_defaults({"engine": {"seq": "1:2:3"}}, {"engine": {"batch": "1"}}) == {"batch": "1"}
    assert engine_defaults(None, None) == {}


def _p(**shapes):
    return Profile({k: ShapeRange(*v) for k, v in shapes.items()})


LEN_OK = ((1,), (8,), (32,))


@pytest.mark.parametrize("profile,message", [
    (_p(x=((1, 1, 8), (8, 128, 8), (4, 1024, 8)), lengths=LEN_OK), "axis 0 has min 1, opt 8, max 4"),
    (_p(x=((1, 1, 7), (8, 128, 7), (32, 1024, 7)), lengths=LEN_OK), "axis 2 is fixed at 8"),
    (_p(x=((1, 1), (8, 128), (32, 1024)), lengths=LEN_OK), "has rank 2"),
    (_p(lengths=LEN_OK), "no shapes for dynamic input 'x'"),
    (_p(x=((1, 1, 8), (8, 128, 8), (32, 1024, 8)), lengths=((1,), (8,), (64,))), "axis 'batch' is 1:8:64 in input 'lengths' but 1:8:32 in 'x'"),
    (_p(x=((1, 1, 8), (8, 128, 8), (32, 1024, 8)), lengths=LEN_OK, z=((1,), (1,), (1,))), "unknown input(s) 'z'"),
])
def test_validate_profiles_errors(profile, message):
    good = _p(x=((1, 1, 8), (8, 128, 8), (32, 1024, 8)), lengths=LEN_OK)
    validate_profiles([good], [X, LENGTHS])
    with pytest.raises(ShapeError) as e:
        validate_profiles([good, profile], [X, LENGTHS])
    assert message in str(e.value) and "profile 1" in str(e.value)
    with pytest.raises(ShapeError, match="no optimization profile"):
        validate_profiles([], [X])


def test_select_profile_prefers_nearest_opt_and_lists_ranges():
    small = _p(x=((1, 1, 8), (1, 64, 8), (1, 2048, 8)))
    big = _p(x=((1, 1, 8), (32, 128, 8), (256, 512, 8)))
    assert select_profile([small, big], {"x": (1, 100, 8)}) == 0
    assert select_profile([small, big], {"x": (16, 100, 8)}) == 1
    assert select_profile([big, small], {"x": (1, 60, 8)}) == 1
    with pytest.raises(ShapeError) as e:
        select_profile([small, big], {"x": (300, 10, 8)})
    text = str(e.value)
    assert "x [300, 10, 8] lie outside every optimization profile" in text
    assert "profile 0: x [1, 1..2048, 8] (opt [1, 64, 8])" in text and "profile 1: x [1..256, 1..512, 8]" in text


def test_profile_json_round_trip():
    p = _p(x=((1, 1, 8), (8, 128, 8), (32, 1024, 8)))
    assert Profile.from_dict(p.to_dict()) == p


def test_inputs_for_onnx_prefers_spec_dims():
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", None, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", None, 8])])
    model = helper.make_model(g)
    plain = inputs_for_onnx(model)
    assert plain[0].dims == ("b", "x_dim1", 8)
    assert inputs_for_onnx(model, [X])[0].dims == ("batch", "seq", 8)
    with pytest.raises(UsageError, match="--dim b=MIN:OPT:MAX"):
        derive_profiles(plain)
    ps, _ = derive_profiles(plain, dims=["b=1:2:3", "x_dim1=1:5:9"])
    assert ps[0].shapes["x"].max == (3, 9, 8)
