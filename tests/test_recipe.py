"""Recipe files: every shipped recipe validates; variants, overrides and every kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rnndeploy.cli import cli
from rnndeploy.errors import RecipeError
from rnndeploy.recipe import METRICS, Recipe, find_recipe, list_recipes, load_recipe, parse_profile, parse_value
from tests.helpers import REPO

RECIPES = sorted((REPO / "recipes").glob("*.toml"))

MINIMAL = """
[recipe]
name = "mini"

[data]
source = "sine"
n_series = 60

[model]
family = "regressor"
hidden_size = 4

[quality]
metric = "mse"
max = 1.0
"""


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_repo_has_the_promised_recipes():
    names = {p.stem for p in RECIPES}
    assert {"sine", "sunspots", "sentiment", "charlm", "g2p"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_and_variant_validates(path):
    recipe = load_recipe(str(path))
    assert recipe.description and recipe.quality.get("note")
    for variant in recipe.variants:
        v = load_recipe(str(path), variant=variant)
        assert v.variant == variant and v.quality_bar.bound is not None
    # round trip through the JSON form a checkpoint stores
    again = Recipe.from_dict(recipe.to_dict())
    assert again.to_dict() == recipe.to_dict()


def test_sine_variants_change_the_cell():
    cells = {v: load_recipe("sine", variant=v).model["cell"] for v in ("lstm", "gru", "rnn")}
    assert cells == {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh"}
    assert load_recipe("sine", variant="gru").name == "sine-gru"
    seq = load_recipe("sine", variant="seq")
    assert seq.data["targets"] == "sequence" and seq.model["output"] == "sequence"
    assert seq.quality_bar.metric == "mse_ratio"


def test_defaults_are_filled_and_bar_direction(tmp_path):
    r = load_recipe(str(write(tmp_path, MINIMAL)))
    assert r.train["epochs"] == 10 and r.train["optimizer"] == "adam" and r.export["opset"] == 17
    assert r.data["window"] == 50 and r.model["cell"] == "lstm" and r.task == "regression"
    bar = r.quality_bar
    assert not bar.higher_is_better and bar.passed(0.5) and not bar.passed(1.5)
    assert r.profile("batch") == (1, 8, 32) and r.profile("src_seq") == r.profile("seq")


def test_overrides_are_toml_values_or_bare_strings():
    r = load_recipe("sine", overrides=["train.epochs=3", "train.lr=0.5", "model.cell=gru", 'data.targets="last"'])
    assert r.train["epochs"] == 3 and r.train["lr"] == 0.5 and r.model["cell"] == "gru"
    assert r.overrides == ("train.epochs=3", "train.lr=0.5", "model.cell=gru", 'data.targets="last"')
    assert parse_value("[1, 2]") == [1, 2] and parse_value("true") is True and parse_value("hello") == "hello"


def test_relative_data_paths(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    text = (
        MINIMAL.replace('source = "sine"\nn_series = 60', 'source = "text_file"\npath = "book.txt"')
        .replace('family = "regressor"', 'family = "charlm"')
        .replace('metric = "mse"\nmax = 1.0', 'metric = "bits_per_char"\nmax = 5.0')
    )
    r = load_recipe(str(write(tmp_path / "sub", text)))
    assert r.data["path"] == str((tmp_path / "sub" / "book.txt").resolve())  # relative to the recipe file
    monkeypatch.chdir(tmp_path)
    r2 = load_recipe(str(tmp_path / "sub" / "r.toml"), overrides=["data.path=other.txt"])
    assert r2.data["path"] == str((tmp_path / "other.txt").resolve())  # --set: relative to the cwd


def err(tmp_path, text=None, **kw):
    path = str(write(tmp_path, text)) if text is not None else "sine"
    with pytest.raises(RecipeError) as e:
        load_recipe(path, **kw)
    return str(e.value)


def test_unknown_key_names_file_key_and_closest(tmp_path):
    msg = err(tmp_path, MINIMAL + "\n[train]\nepoch = 3\n")
    assert str(tmp_path / "r.toml") in msg and "'epoch'" in msg and "did you mean 'epochs'" in msg
    msg = err(tmp_path, MINIMAL.replace("hidden_size", "hiden_size"))
    assert "r.toml" in msg and "'hiden_size'" in msg and "did you mean 'hidden_size'" in msg
    msg = err(tmp_path, MINIMAL.replace("n_series", "n_serie"))
    assert "'n_serie'" in msg and "did you mean 'n_series'" in msg and "[data]" in msg
    msg = err(tmp_path, MINIMAL + "\n[trian]\nepochs = 3\n")
    assert "'[trian]'" in msg and "did you mean 'train'" in msg


def test_wrong_types_name_the_expected_type(tmp_path):
    msg = err(tmp_path, MINIMAL + '\n[train]\nepochs = "3"\n')
    assert "[train] epochs must be an integer" in msg and "'3' (string)" in msg
    msg = err(tmp_path, MINIMAL + "\n[train]\nlr = true\n")
    assert "must be a number" in msg
    msg = err(tmp_path, MINIMAL.replace("hidden_size = 4", "hidden_size = 4.5"))
    assert "'hidden_size' must be an integer" in msg and "r.toml" in msg
    msg = err(tmp_path, MINIMAL + '\n[engine]\nbatch = "8:1:32"\n')
    assert "min:opt:max" in msg
    msg = err(tmp_path, MINIMAL + '\n[export]\nexporter = "dynamoo"\n')
    assert "did you mean 'dynamo'" in msg


def test_structural_mistakes(tmp_path):
    assert "not valid TOML" in err(tmp_path, "[recipe\nname = 1")
    assert "no [quality] section" in err(tmp_path, MINIMAL.split("[quality]")[0])
    assert "lacks the required key 'name'" in err(tmp_path, MINIMAL.replace('name = "mini"', ""))
    msg = err(tmp_path, MINIMAL.replace('family = "regressor"', 'family = "classifier"'))
    assert "cannot learn the regression data" in msg and 'family = "regressor"' in msg
    msg = err(tmp_path, MINIMAL.replace("max = 1.0", "min = 1.0"))
    assert "lower-is-better" in msg
    msg = err(tmp_path, MINIMAL.replace('metric = "mse"', 'metric = "accuracy"'))
    assert "unknown metric 'accuracy'" in msg and "mse" in msg


def test_bad_overrides_and_variants():
    assert "did you mean 'epochs'" in err(None, overrides=["train.epoch=3"])
    msg = err(None, overrides=["train.epochs=abc"])
    assert msg.startswith("--set train.epochs=abc: [train] epochs must be an integer")
    assert "section.key=value" in err(None, overrides=["epochs=3"])
    assert "did you mean 'cell'" in err(None, overrides=["model.cel=gru"])
    assert "did you mean 'gru'" in err(None, variant="gur")


def test_find_recipe_by_name_and_typo():
    assert find_recipe("sine").resolve() == (REPO / "recipes" / "sine.toml").resolve()
    with pytest.raises(RecipeError, match="did you mean 'sine'"):
        find_recipe("sin")


def test_parse_profile():
    assert parse_profile("1:8:32", "x") == (1, 8, 32) and parse_profile("4", "x") == (4, 4, 4)
    for bad in ("0:1:2", "1:2", "a:b:c", "4:2:8"):
        with pytest.raises(RecipeError):
            parse_profile(bad, "x")


def test_metric_catalogue_covers_tasks():
    assert set(METRICS) == {"regression", "classification", "language_model", "seq2seq"}


def test_recipes_command_lists_everything():
    res = CliRunner().invoke(cli, ["recipes"])
    assert res.exit_code == 0, res.output
    for r in list_recipes():
        assert r.name in res.output and r.quality in res.output
    assert "variants: lstm, gru, rnn" in res.output
    res = CliRunner().invoke(cli, ["recipes", "--json"])
    assert res.exit_code == 0 and '"quality": "test mse <= 0.01"' in res.output


def test_switching_the_data_source_keeps_only_keys_it_takes(tmp_path):
    data = tmp_path / "series.csv"
    data.write_text("v\n" + "\n".join(str(i % 7) for i in range(100)) + "\n")
    r = load_recipe("sine", overrides=["data.source=csv_series", f"data.path={data}", "data.column=v"])
    assert r.data["source"] == "csv_series" and r.data["window"] == 50 and "n_series" not in r.data
    # a key given with --set that the new source does not take is still an error
    assert "'n_series'" in err(
        None, overrides=["data.source=csv_series", f"data.path={data}", "data.column=v", "data.n_series=3"]
    )


def test_engine_profiles_and_opt_level():
    r = load_recipe(
        "sine", overrides=['engine.profiles=[{batch="1:1:1", seq="1:50:512"}, {batch="8:32:64"}]', "engine.opt_level=4"]
    )
    assert r.engine["profiles"][1] == {"batch": "8:32:64"} and r.engine["opt_level"] == 4
    assert "above the maximum 5" in err(None, overrides=["engine.opt_level=7"])
    assert "profiles[0] batch" in err(None, overrides=['engine.profiles=[{batch="4:1:2"}]'])
    assert "list of tables" in err(None, overrides=["engine.profiles=[1]"])
