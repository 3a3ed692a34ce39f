"""The seeds' own Keras models end to end: built with Keras 3, trained briefly on
rnndeploy's offline data, saved as .keras and .h5, exported, and held to 1e-5 max abs
against Keras at every validation shape (twice the training length and padded batches
included). The char-level generator samples one character at a time through the
streaming form exported from its stateful Keras copy."""

from __future__ import annotations

import numpy as np
import pytest

from tests.keras_helpers import keras_or_skip, max_errors

keras = keras_or_skip()
pytest.importorskip("onnxruntime")

from rnndeploy.keras.export import KerasExportOptions, export_keras  # noqa: E402
from rnndeploy.keras.tutorials import stateful_generator, train  # noqa: E402
from rnndeploy.onnx_info import describe_onnx  # noqa: E402

pytestmark = pytest.mark.slow
# Brief training: the point is conversion of trained weights, not model quality.
SAMPLES = {"sine_simplernn": 300, "sine_lstm": 300, "sine_gru": 300, "imdb_lstm": 256, "stacked_bilstm": 96,
           "char_lstm": 200}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_tutorial_model_matches_keras_from_keras_and_h5(name, tmp_path):
    trained = train(name, samples=SAMPLES[name], epochs=1)
    for fmt in ("keras", "h5"):
        path = str(tmp_path / f"{name}.{fmt}")
        trained.model.save(path)
        result = export_keras(path, str(tmp_path / f"{name}.{fmt}.onnx"),
                              KerasExportOptions(longest_train_seq=trained.longest_seq))
        worst = max_errors(result)
        assert max(worst.values()) <= 1e-5, (fmt, worst)
        report = result.graphs[0].validation
        long_case = f"batch=3 seq={2 * trained.longest_seq}"
        assert any(c.where == long_case for c in report.checks), "validated at twice the training length"
        if name in ("imdb_lstm", "stacked_bilstm"):
            assert any(c.case == "pre-padded" and c.sizes["seq"] == 2 * trained.longest_seq for c in report.checks)
        info = describe_onnx(result.graphs[0].path)
        assert info.recurrence == "native"
        assert len(info.recurrent_nodes) == (2 if name == "stacked_bilstm" else 1)


def test_char_generator_samples_through_the_streaming_form(tmp_path):
    from rnndeploy.backends import create_runner
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.decoding import generate_text
    from rnndeploy.onnx_decoding import OnnxCharLM

    trained = train("char_lstm", samples=SAMPLES["char_lstm"], epochs=1)
    gen = stateful_generator(trained)
    path = str(tmp_path / "gen.keras")
    gen.save(path)
    result = export_keras(path, str(tmp_path / "gen.onnx"), KerasExportOptions(longest_train_seq=trained.longest_seq))
    assert result.graphs[0].with_state and max(max_errors(result).values()) <= 1e-5
    vocab = trained.info["vocab"]
    prime = [vocab.index(c) for c in "ROMEO:"]
    onnx_ids = OnnxCharLM(str(tmp_path / "gen.onnx")).generate(prime, 60, temperature=0.7, seed=3)
    source = resolve_source(str(tmp_path / "gen.onnx"), keras=path)
    with create_runner("keras", source) as runner:
        names = [t.name for t in source.graph_spec.inputs]
        outs = [t.name for t in source.graph_spec.outputs]

        def step(tokens, states):
            feed = {names[0]: np.asarray(tokens, dtype=np.int32)}
            b = feed[names[0]].shape[0]
            feed.update(zip(names[1:], states or [np.zeros((b, 64), np.float32)] * 2))
            o = runner.infer(feed)
            return o[outs[0]], (o[outs[1]], o[outs[2]])

        keras_ids = generate_text(step, prime, 60, temperature=0.7, seed=3)
    np.testing.assert_array_equal(onnx_ids, keras_ids)
    assert len("".join(vocab[i] for i in onnx_ids)) == 60
