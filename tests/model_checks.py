"""Checks shared by the zoo model tests (tests/test_models_*.py); needs torch."""

from __future__ import annotations

import torch


def check_against_spec(model, graph="model", with_state=False, sizes=((2, 5), (3, 9))):
    """Run graph_module at two shapes; every input and output must match its spec (names,
    order, dims, dtypes) and be finite. Returns the last (inputs, outputs)."""
    g = model.graph_spec(graph, with_state)
    gm = model.graph_module(graph, with_state)
    assert gm.input_names == tuple(t.name for t in g.inputs)
    assert gm.output_names == tuple(t.name for t in g.outputs)
    for batch, seq in sizes:
        ex = model.example_inputs(graph, batch=batch, seq=seq, with_state=with_state, seed=batch)
        assert list(ex) == [t.name for t in g.inputs]
        dims = {"batch": batch, "seq": seq, "src_seq": seq}
        for t in g.inputs:
            assert tuple(ex[t.name].shape) == t.shape_for(dims), t.name
            assert str(ex[t.name].dtype) == f"torch.{t.dtype}"
            if t.dtype == "int64" and t.high is not None:
                assert int(ex[t.name].min()) >= t.low and int(ex[t.name].max()) < t.high
        with torch.no_grad():
            outs = gm(*ex.values())
        assert isinstance(outs, tuple) and len(outs) == len(g.outputs)
        for t, o in zip(g.outputs, outs):
            assert tuple(o.shape) == t.shape_for(dims), t.name
            assert str(o.dtype) == f"torch.{t.dtype}"
            assert torch.isfinite(o).all(), t.name
    return ex, outs
