"""Training: every recipe reaches its stated bar, determinism, early stopping, the CLI."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from rnndeploy.cli import cli  # noqa: E402
from rnndeploy.recipe import find_recipe, load_recipe  # noqa: E402
from rnndeploy.train import train_recipe  # noqa: E402
from tests.helpers import run_cli  # noqa: E402

TINY = ["data.n_series=160", "model.hidden_size=6", "train.epochs=2", "train.batch_size=16"]


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -- every recipe reaches the bar written in its file, with the file's own budget -------------------
def reaches_bar(name, variant=None):
    result = train_recipe(load_recipe(name, variant=variant), None)
    assert result.quality.passed, result.quality.render()
    return result


def test_sine_lstm_recipe_reaches_its_bar_through_the_cli(tmp_path):
    """The demo's default recipe, trained as a user does (a real subprocess)."""
    out = tmp_path / "sine"
    proc = run_cli("train", "sine", "--out", str(out), "--require-quality")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = proc.stdout.splitlines()
    assert any(line.startswith("epoch   1/") and "val mse" in line for line in lines)
    assert any(line.startswith("quality PASSED: test mse =") for line in lines)
    assert any(line.startswith("test: mse ") and "vs persistence" in line for line in lines)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quality"]["passed"] and metrics["metrics"]["test"]["mse"] < 0.01
    # the LSTM beats the persistence forecast by far
    assert metrics["metrics"]["test"]["mse_ratio"] < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["gru", "rnn", "seq"])
def test_sine_variants_reach_their_bar(variant):
    reaches_bar("sine", variant)


def test_sunspots_recipe_beats_persistence():
    r = reaches_bar("sunspots")
    test = r.metrics["test"]
    assert test["mse_ratio"] < 1 and test["rmse_orig"] ** 2 < test["baseline_mse_orig"]
    assert test["rmse_orig"] > 1  # in sunspots, not in normalised units


@pytest.mark.slow
def test_sentiment_recipe_reaches_its_bar():
    r = reaches_bar("sentiment")
    assert r.metrics["test"]["accuracy"] > r.metrics["test"]["majority_accuracy"] + 0.1


@pytest.mark.slow
def test_charlm_recipe_reaches_its_bar():
    r = reaches_bar("charlm")
    assert r.metrics["test"]["bits_per_char"] < 3.5  # a unigram model needs ~4.3


@pytest.mark.slow
def test_g2p_recipe_reaches_its_bar():
    r = reaches_bar("g2p")
    test = r.metrics["test"]
    assert test["sequence_accuracy"] > 0.2 and test["greedy_token_accuracy"] > 0.6


# -- loop behaviour ------------------------------------------------------------------------------------
def test_same_seed_same_weights_different_seed_different_weights():
    over = TINY + ["model.num_layers=2", "model.dropout=0.3", "train.threads=1"]  # dropout draws from the RNG
    state_before = torch.get_rng_state()
    a = train_recipe(load_recipe("sine", overrides=over + ["train.seed=5"]), None)
    assert torch.equal(torch.get_rng_state(), state_before)  # the caller's RNG is left alone
    b = train_recipe(load_recipe("sine", overrides=over + ["train.seed=5"]), None)
    c = train_recipe(load_recipe("sine", overrides=over + ["train.seed=6"]), None)
    assert a.history[-1].train_loss == b.history[-1].train_loss
    assert a.metrics == b.metrics
    assert a.metrics != c.metrics


def test_checkpoint_weights_are_bit_identical(tmp_path):
    from safetensors.torch import load_file

    for name in ("a", "b"):
        train_recipe(load_recipe("sine", overrides=TINY + ["train.seed=3", "train.threads=1"]), tmp_path / name)
    wa, wb = (
        load_file(str(tmp_path / "a" / "weights.safetensors")),
        load_file(str(tmp_path / "b" / "weights.safetensors")),
    )
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a" / "weights.safetensors").read_bytes() == (
        tmp_path / "b" / "weights.safetensors"
    ).read_bytes()


def test_early_stopping_restores_the_best_epoch():
    # a large learning rate makes validation loss bounce, so the last epoch is not the best
    over = TINY + ["train.epochs=8", "train.lr=0.08", "train.patience=2", "train.clip_grad_norm=0", "train.seed=1"]
    r = train_recipe(load_recipe("sine", overrides=over), None)
    assert r.best_epoch < r.epochs_run, "precondition: a later epoch was worse"
    best = r.history[r.best_epoch - 1]
    assert best.improved and r.metrics["val"]["mse"] == pytest.approx(best.val["mse"], rel=1e-9)
    assert r.metrics["val"]["mse"] == min(h.val["mse"] for h in r.history)
    if r.stopped == "early_stopping":
        assert r.epochs_run - r.best_epoch == 2


def test_max_minutes_stops_early():
    r = train_recipe(load_recipe("sine", overrides=TINY + ["train.epochs=50", "train.max_minutes=0.0001"]), None)
    assert r.stopped == "max_minutes" and r.epochs_run == 1


def test_model_and_data_must_agree():
    from rnndeploy.errors import RecipeError

    with pytest.raises(RecipeError, match="targets"):
        train_recipe(load_recipe("sine", overrides=TINY + ['model.output="sequence"']), None)


# -- CLI -------------------------------------------------------------------------------------------------
def test_cli_train_quiet_json_and_require_quality(tmp_path):
    runner = CliRunner()
    args = ["train", "sine", "--epochs", "1", "--seed", "2"] + [x for s in TINY[:2] for x in ("--set", s)]
    res = runner.invoke(cli, args + ["--out", str(tmp_path / "q"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "epoch" not in res.output and "quality" in res.output
    recipe = json.loads((tmp_path / "q" / "recipe.json").read_text())
    assert recipe["train"]["epochs"] == 1 and recipe["train"]["seed"] == 2
    assert recipe["provenance"]["overrides"][-2:] == ["train.epochs=1", "train.seed=2"]

    res = runner.invoke(cli, args + ["--out", str(tmp_path / "j"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["epochs_run"] == 1 and "test" in data["metrics"]

    impossible = args + ["--set", "quality.max=1e-12", "--out", str(tmp_path / "r"), "--quiet"]
    res = runner.invoke(cli, impossible + ["--require-quality"])
    assert res.exit_code == 1 and "quality MISSED" in res.output
    assert (tmp_path / "r" / "manifest.json").exists()  # the checkpoint is still written
    assert runner.invoke(cli, impossible).exit_code == 0  # without the flag a miss is reported, not fatal


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--set", "train.epoch=3"], ["unknown key 'epoch' in [train]", "did you mean 'epochs'"]),
        (["--set", "train.epochs=abc"], ["[train] epochs must be an integer"]),
        (["--set", "model.cel=gru"], ["'cel'", "did you mean 'cell'"]),
        (
            ["--set", "data.source=csv_series", "--set", "data.path=/nonexistent/s.csv", "--set", "data.column=v"],
            ["/nonexistent/s.csv does not exist"],
        ),
        (["--variant", "lsmt"], ["no variant 'lsmt'", "did you mean 'lstm'"]),
    ],
    ids=["unknown-key", "wrong-type", "model-key", "missing-data-file", "variant"],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, needles):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "sine", "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    for n in needles:
        assert n in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_recipe_file_through_a_real_subprocess(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(find_recipe("sine").read_text().replace("batch_size = 32", 'batch_size = "32"'))
    out = tmp_path / "run"
    for args, needle in (
        ([str(bad)], f"{bad}: [train] batch_size must be an integer, got '32' (string)"),
        (
            [
                "sine",
                "--set",
                "data.source=csv_series",
                "--set",
                f"data.path={tmp_path / 'missing.csv'}",
                "--set",
                "data.column=v",
            ],
            f"{tmp_path / 'missing.csv'} does not exist",
        ),
        ([str(tmp_path / "nope.toml")], "recipe"),
        (["sine", "--set", "train.epoch=3"], "unknown key 'epoch' in [train] — did you mean 'epochs'?"),
    ):
        proc = run_cli("train", *args, "--out", str(out))
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr and needle in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # nothing half-written


def test_out_never_replaces_a_directory_that_is_not_a_checkpoint(tmp_path):
    from rnndeploy.errors import UsageError

    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(cli, ["train", "sine", "--out", str(precious)] + [x for s in TINY for x in ("--set", s)])
    assert res.exit_code == 2 and "not an rnndeploy checkpoint; refusing to replace it" in res.output
    assert (precious / "notes.txt").read_text() == "keep me"
    # an existing checkpoint is replaced (atomically), an empty directory is used
    ckpt = tmp_path / "ckpt"
    for _ in range(2):
        r = train_recipe(load_recipe("sine", overrides=TINY), ckpt)
        assert r.checkpoint_dir == str(ckpt) and (ckpt / "manifest.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    train_recipe(load_recipe("sine", overrides=TINY), empty)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "data", "empty"]
    with pytest.raises(UsageError, match="is a file"):
        train_recipe(load_recipe("sine", overrides=TINY), precious / "notes.txt")
