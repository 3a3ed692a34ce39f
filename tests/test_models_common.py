"""What every zoo family shares: registry, spec ↔ graph agreement, determinism, JSON round trip."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from rnndeploy.errors import RecipeError, UsageError  # noqa: E402
from rnndeploy.models import ZooModel, build_model, model_class  # noqa: E402
from rnndeploy.spec import FAMILIES, ModelSpec  # noqa: E402
from tests.model_checks import check_against_spec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = {
    "regressor": (
        {"family": "regressor", "hidden_size": 5, "num_layers": 2, "variable_length": True},
        {"input_size": 3, "output_size": 2},
    ),
    "classifier": (
        {"family": "classifier", "hidden_size": 5, "embedding_dim": 4, "bidirectional": True, "attention": True},
        {"vocab_size": 17, "num_classes": 3, "pad_id": 0},
    ),
    "charlm": (
        {"family": "charlm", "cell": "gru", "hidden_size": 6, "embedding_dim": 4, "num_layers": 2},
        {"vocab_size": 13},
    ),
    "seq2seq": (
        {"family": "seq2seq", "hidden_size": 6, "embedding_dim": 4},
        {"src_vocab_size": 11, "tgt_vocab_size": 9, "pad_id": 0, "bos_id": 2, "eos_id": 3},
    ),
}


def tiny(family: str, seed: int = 0, **overrides):
    cfg, info = TINY[family]
    return build_model({**cfg, **overrides}, info, seed=seed).eval()


def test_registry_covers_every_family():
    assert set(TINY) == set(FAMILIES) - {"custom"}
    for family in TINY:
        cls = model_class(family)
        assert issubclass(cls, ZooModel) and cls.family == family


@pytest.mark.parametrize("family", sorted(TINY))
def test_every_graph_matches_its_spec(family):
    m = tiny(family)
    spec = m.spec()
    assert spec.family == family
    assert tuple(spec.graphs) == m.graph_names
    for graph in m.graph_names:
        check_against_spec(m, graph)
        if m.supports_state(graph):
            check_against_spec(m, graph, with_state=True)


@pytest.mark.parametrize("family", sorted(TINY))
def test_spec_round_trips_and_is_json(family):
    spec = tiny(family).spec()
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert spec.attrs["cell"] == TINY[family][0].get("cell", "lstm")
    assert spec.attrs["hidden_size"] == TINY[family][0]["hidden_size"]


@pytest.mark.parametrize("family", sorted(TINY))
def test_determinism_under_seed(family):
    a, b, c = tiny(family, seed=3), tiny(family, seed=3), tiny(family, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    graph = a.graph_names[-1]
    ex = a.example_inputs(graph, seed=1)
    assert ex.keys() == b.example_inputs(graph, seed=1).keys()
    with torch.no_grad():
        oa, ob, oc = (m.graph_module(graph)(*ex.values()) for m in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(oa, ob))
    assert not torch.equal(oa[0], oc[0])
    # example_inputs is seeded too
    e1, e2 = a.example_inputs(graph, seed=5), a.example_inputs(graph, seed=5)
    assert all(torch.equal(e1[k], e2[k]) for k in e1)


@pytest.mark.parametrize("family", sorted(TINY))
def test_graph_module_shares_parameters_and_checks_arity(family):
    m = tiny(family)
    graph = m.graph_names[0]
    gm = m.graph_module(graph)
    assert {id(p) for p in gm.parameters()} == {id(p) for p in m.parameters()}
    with pytest.raises(UsageError, match="takes"):
        gm(*list(m.example_inputs(graph).values())[:-1])


@pytest.mark.parametrize(
    "family, info, needle",
    [
        ("classifier", {"vocab_size": 10}, "'num_classes'"),
        ("classifier", {"vocab_size": 10, "num_classes": 2, "pad_id": 10}, "pad_id"),
        ("charlm", {}, "'vocab_size'"),
        ("charlm", {"vocab_size": 3, "vocab": ["a", "b"]}, "vocab"),
        ("seq2seq", {"src_vocab_size": 5, "tgt_vocab_size": 5, "eos_id": 3}, "bos_id"),
        ("seq2seq", {"src_vocab_size": 5, "tgt_vocab_size": 5, "bos_id": 1, "eos_id": 7}, "eos_id"),
    ],
)
def test_missing_or_bad_data_info(family, info, needle):
    with pytest.raises(RecipeError, match=needle):
        build_model({"family": family}, info)


def test_build_model_validates_config():
    with pytest.raises(RecipeError, match="did you mean 'embedding_dim'"):
        build_model({"family": "charlm", "embeding_dim": 8}, {"vocab_size": 5})
    m = build_model({"family": "charlm", "units": 7}, {"vocab_size": 5})
    assert m.config["hidden_size"] == 7 and m.config["family"] == "charlm"
