"""Recipe files (TOML) → validated, fully resolved ``Recipe`` objects. Torch-free.

A recipe names everything a run needs::

    [recipe]   name, description
    [data]     source = "<one of rnndeploy.data.SOURCES>" + that source's parameters
    [model]    family + the zoo's keys (validated by rnndeploy.models.config)
    [train]    epochs, batch_size, lr, weight_decay, clip_grad_norm, patience, seed, ...
    [quality]  metric, split, and the bar: min = … (higher is better) or max = … (lower is better)
    [export]   opset, exporter, with_state, example sizes, longest_train_seq
    [engine]   TensorRT profile shorthands ("1:8:32" = min:opt:max) and precision
    [variants.NAME.SECTION]  overlays chosen with ``--variant NAME``

Every key is checked: an unknown or mistyped key raises RecipeError naming the file,
the key and the closest allowed key; a wrong type names the expected type. ``--set
section.key=value`` overrides are parsed as TOML values (a bare word is a string) and
validated the same way. Relative data paths in a file are relative to that file;
relative paths given with ``--set`` are relative to the current directory.
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

try:
    import tomllib  # novermin
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from rnndeploy.data import SOURCES
from rnndeploy.data.base import TASKS, Param
from rnndeploy.errors import RecipeError
from rnndeploy.validation import MAX_THREADS, MAX_WORKSPACE_MIB, TORCH_EXPORT_OPSETS

RECIPE_SUFFIX = ".toml"
SECTIONS = ("recipe", "data", "model", "train", "quality", "export", "engine", "variants")
ENGINE_PRECISIONS = ("fp32", "fp16", "fp16-keep-recurrence")
# Every loop rnndeploy runs is bounded: 10^6 passes over a training split is no recipe, a typo.
MAX_EPOCHS = 10**6

SCHEMAS: Dict[str, Dict[str, Param]] = {
    "recipe": {
        "name": Param("str", None, "short name (used for run directories and model names)", required=True),
        "description": Param("str", "", "one line shown by `rnndeploy recipes`"),
    },
    "train": {
        "epochs": Param("int", 10, "maximum passes over the training split", minimum=1, maximum=MAX_EPOCHS),
        "batch_size": Param("int", 64, "examples per optimisation step", minimum=1),
        "lr": Param("float", 1e-3, "learning rate", minimum=0.0, maximum=10.0),
        "weight_decay": Param("float", 0.0, "L2 penalty (decoupled with optimizer adamw)", minimum=0.0),
        "optimizer": Param("str", "adam", "optimisation algorithm", choices=("adam", "adamw", "sgd")),
        "clip_grad_norm": Param("float", 1.0, "clip the global gradient norm to this value (0 disables)", minimum=0.0),
        "patience": Param(
            "int", 5, "stop after this many epochs without validation improvement (0 disables)", minimum=0
        ),
        "min_delta": Param(
            "float", 0.0, "smallest change of the monitored metric that counts as improvement", minimum=0.0
        ),
        "lr_decay": Param(
            "float", 1.0, "multiply the learning rate by this after every epoch (1 = constant)", minimum=0.0
        ),
        "steps_per_epoch": Param(
            "int", None, "cap on optimisation steps per epoch (default: the whole train split)", minimum=1
        ),
        "seed": Param("int", 0, "seeds weight init, shuffling and dropout (same seed → same weights on CPU)", minimum=0),
        "max_minutes": Param(
            "float", None, "stop training after this many minutes (the best epoch so far is kept)", minimum=0.0
        ),
        "threads": Param("int", None, "torch intra-op threads (default: torch's choice)", minimum=1,
                         maximum=MAX_THREADS),
    },
    "quality": {
        "metric": Param("str", None, "the metric this recipe promises (see METRICS)", required=True),
        "split": Param("str", "test", "the split the bar is checked on", choices=("val", "test")),
        "min": Param("float", None, "the bar for a higher-is-better metric"),
        "max": Param("float", None, "the bar for a lower-is-better metric"),
        "note": Param("str", "", "how the bar was measured"),
    },
    "export": {
        "opset": Param("int", 17, "ONNX opset (torch exports 7..23)", minimum=TORCH_EXPORT_OPSETS[0],
                       maximum=TORCH_EXPORT_OPSETS[1]),
        "exporter": Param(
            "str",
            "torchscript",
            "torch.onnx exporter tried first (the other is the fallback)",
            choices=("torchscript", "dynamo", "auto"),
        ),
        "with_state": Param("bool", False, "export the streaming form (state tensors in and out)"),
        "example_batch": Param("int", 2, "batch size of the traced example", minimum=1),
        "example_seq": Param("int", 7, "sequence length of the traced example", minimum=1),
        "longest_train_seq": Param(
            "int", None, "longest sequence seen in training (default: from the data)", minimum=1
        ),
    },
    "engine": {
        "batch": Param("str", "1:8:32", "TensorRT profile for the batch axis, min:opt:max"),
        "seq": Param("str", "1:128:1024", "TensorRT profile for the time axis, min:opt:max"),
        "src_seq": Param("str", None, "profile for a decoder's source length (default: same as seq)"),
        "profiles": Param(
            "profile_list",
            None,
            'several optimisation profiles, e.g. [{batch = "1:1:1", seq = "1:128:2048"}, {batch = "8:32:64"}] '
            "(axes a profile leaves out come from batch/seq)",
        ),
        "precision": Param("str", "fp32", "engine precision / FP16 policy", choices=ENGINE_PRECISIONS),
        "workspace_mib": Param("int", None, "builder workspace limit in MiB (default: TensorRT's)", minimum=1,
                               maximum=MAX_WORKSPACE_MIB),
        "opt_level": Param(
            "int", None, "TensorRT builder optimisation level (default: TensorRT's, 3)", minimum=0, maximum=5
        ),
    },
}

# Metric name → (True when higher is better, description), per task.
METRICS: Dict[str, Dict[str, Tuple[bool, str]]] = {
    "regression": {
        "mse": (False, "mean squared error in model units (normalised when the data are)"),
        "rmse": (False, "root mean squared error in model units"),
        "mae": (False, "mean absolute error in model units"),
        "mse_orig": (False, "mean squared error in the data's original units"),
        "rmse_orig": (False, "root mean squared error in original units"),
        "mae_orig": (False, "mean absolute error in original units"),
        "mse_ratio": (False, "MSE divided by the persistence forecast's MSE (< 1 beats persistence)"),
        "loss": (False, "training loss (MSE)"),
    },
    "classification": {
        "accuracy": (True, "share of correctly classified examples"),
        "loss": (False, "cross-entropy (nats)"),
    },
    "language_model": {
        "bits_per_char": (False, "cross-entropy in bits per character"),
        "accuracy": (True, "next-character top-1 accuracy"),
        "perplexity": (False, "exp(cross-entropy)"),
        "loss": (False, "cross-entropy (nats)"),
    },
    "seq2seq": {
        "token_accuracy": (True, "teacher-forced next-token accuracy over target tokens + eos"),
        "greedy_token_accuracy": (
            True,
            "position-wise accuracy of greedy decodes (tokens + eos, vs. the longer of the two)",
        ),
        "sequence_accuracy": (True, "share of greedy decodes exactly equal to the target"),
        "loss": (False, "teacher-forced cross-entropy (nats)"),
    },
}


@dataclass(frozen=True)
class Recipe:
    """A validated recipe with every default filled in (what a checkpoint records).

    ``data`` has the source's defaults and absolute paths; ``model`` is the zoo's
    resolved config; ``train``/``quality``/``export``/``engine`` hold every key of
    their schema. ``overrides`` lists the ``--set`` strings applied.
    """

    name: str
    description: str
    data: Dict[str, Any]
    model: Dict[str, Any]
    train: Dict[str, Any]
    quality: Dict[str, Any]
    export: Dict[str, Any]
    engine: Dict[str, Any]
    path: Optional[str] = None
    variant: Optional[str] = None
    variants: Tuple[str, ...] = ()
    overrides: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def task(self) -> str:
        return SOURCES[self.data["source"]].task

    @property
    def quality_bar(self) -> QualityBar:
        q = self.quality
        higher, _ = METRICS[self.task][q["metric"]]
        return QualityBar(q["metric"], q["split"], q["min"] if higher else q["max"], higher)

    def profile(self, axis: str) -> Tuple[int, int, int]:
        """(min, opt, max) of the engine profile for ``axis`` ("batch", "seq", "src_seq")."""
        value = self.engine.get(axis) or (self.engine["seq"] if axis == "src_seq" else None)
        if value is None:
            raise RecipeError(f"recipe {self.name!r} has no engine profile for axis {axis!r}")
        return parse_profile(value, f"[engine] {axis}")

    def to_dict(self) -> Dict[str, Any]:
        return copy.deepcopy(
            {
                "recipe": {"name": self.name, "description": self.description},
                "data": self.data,
                "model": self.model,
                "train": self.train,
                "quality": self.quality,
                "export": self.export,
                "engine": self.engine,
                "provenance": {
                    "path": self.path,
                    "variant": self.variant,
                    "variants": list(self.variants),
                    "overrides": list(self.overrides),
                },
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], origin: str = "recipe") -> Recipe:
        """Rebuild from ``to_dict()`` output (e.g. a checkpoint's recipe.json), re-validated."""
        d = dict(d)
        prov = d.pop("provenance", {}) or {}
        recipe = _validate(d, origin, base_dir=None, origins={})
        return cls(
            **{
                **recipe.__dict__,
                "path": prov.get("path"),
                "variant": prov.get("variant"),
                "variants": tuple(prov.get("variants") or ()),
                "overrides": tuple(prov.get("overrides") or ()),
            }
        )


@dataclass(frozen=True)
class QualityBar:
    """The promise a recipe makes: ``metric`` on ``split`` is ≥ (or ≤) ``bound``."""

    metric: str
    split: str
    bound: float
    higher_is_better: bool

    def passed(self, value: float) -> bool:
        return value >= self.bound if self.higher_is_better else value <= self.bound

    def render(self) -> str:
        return f"{self.split} {self.metric} {'>=' if self.higher_is_better else '<='} {self.bound:g}"


# -- public entry points -------------------------------------------------------------------------
def recipes_dirs() -> List[Path]:
    """Where bare recipe names are looked up: ./recipes, then the repository's recipes/."""
    repo = Path(__file__).resolve().parents[1] / "recipes"
    out = [Path.cwd() / "recipes"]
    if repo.resolve() != out[0].resolve():
        out.append(repo)
    return out


def find_recipe(name_or_path: str) -> Path:
    """A recipe path from a path or a bare name ("sine" → recipes/sine.toml)."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if p.exists():
        raise RecipeError(f"recipe {p} is not a file", "give a .toml recipe file or a recipe name")
    looks_like_name = "/" not in name_or_path and "\\" not in name_or_path
    if looks_like_name:
        stem = name_or_path[: -len(RECIPE_SUFFIX)] if name_or_path.endswith(RECIPE_SUFFIX) else name_or_path
        for d in recipes_dirs():
            cand = d / f"{stem}{RECIPE_SUFFIX}"
            if cand.is_file():
                return cand
    known = sorted({f.stem for d in recipes_dirs() if d.is_dir() for f in d.glob(f"*{RECIPE_SUFFIX}")})
    close = difflib.get_close_matches(Path(name_or_path).stem, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise RecipeError(
        f"recipe {name_or_path!r} not found",
        f"{hint}give a path to a .toml file or one of: {', '.join(known) or '(none)'}",
    )


def read_recipe_file(path: Path) -> Dict[str, Any]:
    """The raw TOML tables of a recipe file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(
            f"{path}: not valid TOML: {exc}", "fix the syntax (strings need quotes, tables [brackets])"
        ) from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read: {exc.strerror}") from None


def load_recipe(name_or_path: str, variant: Optional[str] = None, overrides: Sequence[str] = ()) -> Recipe:
    """Find, parse, overlay ``variant``, apply ``--set`` ``overrides`` and validate.

    Raises:
        RecipeError: the file, the variant, a key, a type or a value is wrong; the
            message names the file (or the --set option) and the key.
    """
    path = find_recipe(name_or_path)
    raw = read_recipe_file(path)
    origin = str(path)
    if not isinstance(raw.get("variants", {}), dict):
        raise RecipeError(f"{origin}: [variants] must be a table of tables ([variants.NAME.SECTION])")
    variants = raw.pop("variants", {})
    for vname, overlay in variants.items():
        if not isinstance(overlay, dict):
            raise RecipeError(f"{origin}: variant {vname!r} must be a table", f"write [variants.{vname}.model] etc.")
        for sec, table in overlay.items():
            if sec not in SECTIONS or sec == "variants":
                _unknown(origin, "section", f"variants.{vname}.{sec}", sec, [s for s in SECTIONS if s != "variants"])
            if not isinstance(table, dict):
                raise RecipeError(f"{origin}: [variants.{vname}.{sec}] must be a table")
    base_dir = path.resolve().parent
    _resolve_paths(raw, base_dir)
    if variant is not None:
        if variant not in variants:
            close = difflib.get_close_matches(variant, list(variants), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise RecipeError(
                f"{origin}: no variant {variant!r}",
                f"{hint}variants: {', '.join(variants) or '(this recipe has none)'}",
            )
        overlay = copy.deepcopy(variants[variant])
        _resolve_paths(overlay, base_dir)
        renamed = "name" in overlay.get("recipe", {})
        for sec, table in overlay.items():
            raw.setdefault(sec, {})
            if not isinstance(raw[sec], dict):
                raise RecipeError(f"{origin}: [{sec}] must be a table")
            raw[sec].update(table)
        if not renamed and isinstance(raw.get("recipe"), dict) and isinstance(raw["recipe"].get("name"), str):
            raw["recipe"]["name"] = f"{raw['recipe']['name']}-{variant}"
    origins: Dict[Tuple[str, str], str] = {}
    file_source = raw.get("data", {}).get("source") if isinstance(raw.get("data"), dict) else None
    for text in overrides:
        apply_override(raw, text, origins)
    _drop_foreign_data_keys(raw, file_source, origins)
    recipe = _validate(raw, origin, base_dir, origins)
    return Recipe(
        **{
            **recipe.__dict__,
            "path": str(path.resolve()),
            "variant": variant,
            "variants": tuple(variants),
            "overrides": tuple(overrides),
        }
    )


def _drop_foreign_data_keys(raw: Dict[str, Any], file_source: Any, origins: Mapping[Tuple[str, str], str]) -> None:
    """After ``--set data.source=OTHER``, forget the file's [data] keys OTHER does not take.

    The recipe's own keys belong to its own source (a sine recipe's n_series means
    nothing to a CSV file); keys given with --set are kept, so their typos still fail.
    """
    data = raw.get("data")
    if ("data", "source") not in origins or not isinstance(data, dict) or data.get("source") == file_source:
        return
    new = SOURCES.get(data.get("source"))
    if new is None:
        return
    for key in list(data):
        if key != "source" and key not in new.params and ("data", key) not in origins:
            del data[key]


def apply_override(raw: Dict[str, Any], text: str, origins: Dict[Tuple[str, str], str]) -> None:
    """Apply one ``section.key=value`` to the raw tables (value parsed as TOML, else a string)."""
    label = f"--set {text}"
    key_part, sep, value_text = text.partition("=")
    section, dot, key = key_part.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise RecipeError(f"{label}: expected section.key=value", "e.g. --set train.epochs=5 or --set model.cell=gru")
    if section not in SECTIONS or section == "variants":
        _unknown(label, "section", section, section, [s for s in SECTIONS if s != "variants"])
    if "." in key:
        raise RecipeError(f"{label}: {key_part!r} has more than one dot", "keys are section.key, e.g. train.lr")
    value = parse_value(value_text.strip())
    schema = _schema_for(section, raw)
    if schema is not None and key in schema and schema[key].type == "path" and isinstance(value, str):
        value = str(Path(value).expanduser().resolve())
    table = raw.setdefault(section, {})
    if not isinstance(table, dict):
        raise RecipeError(f"{label}: [{section}] is not a table in the recipe")
    table[key] = value
    origins[(section, key)] = label


def parse_value(text: str) -> Any:
    """A --set value: TOML (5, 0.1, true, "x", [1, 2]) or, failing that, the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_profile(value: Any, what: str) -> Tuple[int, int, int]:
    """ "1:8:32" → (1, 8, 32); "8" → (8, 8, 8). min ≤ opt ≤ max, all ≥ 1."""
    parts = str(value).split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) == 1:
        nums = nums * 3
    if len(nums) != 3 or not (1 <= nums[0] <= nums[1] <= nums[2]):
        raise RecipeError(
            f"{what} = {value!r} is not a min:opt:max profile",
            'write three integers with 1 <= min <= opt <= max, e.g. "1:8:32"',
        )
    return nums[0], nums[1], nums[2]


@dataclass(frozen=True)
class RecipeSummary:
    name: str
    path: str
    description: str
    quality: str
    variants: Tuple[str, ...]
    task: str


def list_recipes(directory: Optional[Path] = None) -> List[RecipeSummary]:
    """Every recipe in ``directory`` (default: the first recipes dir that exists), validated."""
    dirs = [directory] if directory else [d for d in recipes_dirs() if d.is_dir()][:1]
    out = []
    for d in dirs:
        for f in sorted(Path(d).glob(f"*{RECIPE_SUFFIX}")):
            r = load_recipe(str(f))
            out.append(RecipeSummary(f.stem, str(f), r.description, r.quality_bar.render(), r.variants, r.task))
    return out


def zoo_models(only: Optional[Sequence[str]] = None) -> List[Tuple[str, Optional[str]]]:
    """(recipe, variant) for every recipe (its default first, variant None) and each of its variants.

    ``only`` keeps the entries named "recipe" (its default model), "recipe:variant" (that
    variant) or "recipe:*" (every variant of it)."""
    out: List[Tuple[str, Optional[str]]] = []
    for r in list_recipes():
        for v in (None,) + tuple(r.variants):
            wanted = {r.name} if v is None else {f"{r.name}:{v}", f"{r.name}:*"}
            if only is None or wanted & set(only):
                out.append((r.name, v))
    return out


# -- validation ------------------------------------------------------------------------------------
def _schema_for(section: str, raw: Mapping[str, Any]) -> Optional[Dict[str, Param]]:
    if section == "data":
        src = raw.get("data", {}).get("source") if isinstance(raw.get("data"), dict) else None
        return dict(SOURCES[src].params) if src in SOURCES else None
    return SCHEMAS.get(section)


def _resolve_paths(raw: Dict[str, Any], base_dir: Path) -> None:
    """Make relative "path"-typed [data] values absolute, relative to the recipe's directory."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return
    schema = _schema_for("data", raw) or {}
    for key, param in schema.items():
        v = data.get(key)
        if param.type == "path" and isinstance(v, str) and v:
            p = Path(v).expanduser()
            data[key] = str(p if p.is_absolute() else (base_dir / p).resolve())


def _where(origin: str, section: str, key: str, origins: Mapping[Tuple[str, str], str]) -> str:
    return f"{origins.get((section, key)) or origin}: [{section}] {key}"


def _unknown(where: str, kind: str, shown: str, key: str, allowed: Sequence[str], suffix: str = "") -> None:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise RecipeError(f"{where}: unknown {kind} {shown!r}{suffix}", f"{hint}allowed: {', '.join(allowed)}")


FLOAT32_MAX = 3.4028234663852886e38

_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "a (non-empty, when required) string",
    "path": "a file path (string)",
    "bool": "true or false",
    "str_list": "a list of strings",
    "profile_list": 'a list of tables of "min:opt:max" ranges',
}


def check_value(where: str, param: Param, value: Any) -> Any:
    """``value`` checked against ``param`` (type, choices, minimum); floats normalised."""
    t = param.type
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str) and (bool(value.strip()) or not param.required),
        "path": isinstance(value, str) and bool(value),
        "bool": isinstance(value, bool),
        "str_list": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "profile_list": isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v for v in value),
    }[t]
    if not ok:
        raise RecipeError(
            f"{where} must be {_TYPE_NAMES[t]}, got {value!r} ({_toml_type(value)})",
            f"write {_example(param)}",
        )
    if t == "float":
        value = float(value)
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:  # TOML reads nan / inf; torch computes in float32
            raise RecipeError(f"{where} must be a finite number (|x| <= {FLOAT32_MAX:.3g}), got {value!r}",
                              f"write {_example(param)}")
    if param.choices is not None:
        vals = value if t == "str_list" else [value]
        for v in vals:
            if v not in param.choices:
                close = difflib.get_close_matches(str(v), [str(c) for c in param.choices], n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise RecipeError(
                    f"{where} = {v!r} is not allowed", f"{hint}use one of: {', '.join(repr(c) for c in param.choices)}"
                )
    if param.minimum is not None and t in ("int", "float") and value < param.minimum:
        raise RecipeError(f"{where} = {value!r} is below the minimum {param.minimum:g}", param.doc)
    if param.maximum is not None and t in ("int", "float") and value > param.maximum:
        raise RecipeError(f"{where} = {value!r} is above the maximum {param.maximum:g}", param.doc)
    if t == "profile_list":
        for i, table in enumerate(value):
            for axis, rng in table.items():
                parse_profile(rng, f"{where}[{i}] {axis}")
    return value


def _toml_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "table"
    return type(v).__name__


def _example(param: Param) -> str:
    if param.choices:
        return " or ".join(repr(c) if param.type != "str" else f'"{c}"' for c in param.choices[:3])
    return {
        "int": "e.g. 10",
        "float": "e.g. 0.001",
        "str": 'e.g. "text" (quoted)',
        "path": 'e.g. "data/my.csv"',
        "bool": "true or false",
        "str_list": 'e.g. ["a", "b"]',
        "profile_list": '[{batch = "1:1:1", seq = "1:128:1024"}]',
    }[param.type]


def _check_section(
    origin: str, section: str, table: Any, schema: Mapping[str, Param], origins: Mapping[Tuple[str, str], str]
) -> Dict[str, Any]:
    if not isinstance(table, dict):
        raise RecipeError(f"{origin}: [{section}] must be a table, got {_toml_type(table)}")
    for key in table:
        if key not in schema:
            _unknown(origins.get((section, key)) or origin, "key", key, key, list(schema), f" in [{section}]")
    out: Dict[str, Any] = {}
    for key, param in schema.items():
        if key in table and table[key] is None and not param.required:
            # JSON null (a resolved recipe read back, e.g. from a checkpoint) means "unset".
            out[key] = copy.deepcopy(param.default)
        elif key in table:
            out[key] = check_value(_where(origin, section, key, origins), param, table[key])
        elif param.required:
            raise RecipeError(f"{origin}: [{section}] lacks the required key {key!r}", param.doc)
        else:
            out[key] = copy.deepcopy(param.default)
    return out


def _validate(
    raw: Mapping[str, Any], origin: str, base_dir: Optional[Path], origins: Mapping[Tuple[str, str], str]
) -> Recipe:
    for sec in raw:
        if sec not in SECTIONS:
            _unknown(origin, "section", f"[{sec}]", sec, list(SECTIONS))
    for sec in ("recipe", "data", "model", "quality"):
        if sec not in raw:
            raise RecipeError(f"{origin}: the recipe has no [{sec}] section", f"add [{sec}] (see recipes/sine.toml)")
    head = _check_section(origin, "recipe", raw["recipe"], SCHEMAS["recipe"], origins)

    # [data]: the source decides which keys exist.
    data_raw = raw["data"]
    if not isinstance(data_raw, dict):
        raise RecipeError(f"{origin}: [data] must be a table")
    if "source" not in data_raw:
        raise RecipeError(f"{origin}: [data] lacks 'source'", f"use one of: {', '.join(SOURCES)}")
    src = data_raw["source"]
    if src not in SOURCES:
        _unknown(origins.get(("data", "source")) or origin, "data source", src, str(src), list(SOURCES))
    data_schema = {"source": Param("str", None, "dataset source", required=True), **SOURCES[src].params}
    data = _check_section(origin, "data", data_raw, data_schema, origins)
    if base_dir is not None:
        _resolve_paths({"data": data}, base_dir)
    task = SOURCES[src].task

    # [model]: the zoo owns its keys (torch-free validation in rnndeploy.models.config).
    from rnndeploy.models.config import validate_config

    model_raw = raw["model"]
    if not isinstance(model_raw, dict):
        raise RecipeError(f"{origin}: [model] must be a table")
    try:
        model = validate_config(None, model_raw)
    except RecipeError as err:
        # Name the --set option when the offending key came from one.
        set_here = [lbl for (sec, key), lbl in origins.items() if sec == "model" and repr(key) in err.message]
        where = set_here[0] if set_here else origin
        raise RecipeError(f"{where}: [model] {err.message}", err.hint) from None
    expected_family = TASKS[task]
    if model["family"] != expected_family:
        raise RecipeError(
            f"{origin}: [model] family {model['family']!r} cannot learn the {task} data of source {src!r}",
            f'use family = "{expected_family}", or a {model["family"]} data source',
        )

    train = _check_section(origin, "train", raw.get("train", {}), SCHEMAS["train"], origins)
    quality = _check_section(origin, "quality", raw["quality"], SCHEMAS["quality"], origins)
    metrics = METRICS[task]
    if quality["metric"] not in metrics:
        _unknown(
            origins.get(("quality", "metric")) or origin,
            "metric",
            quality["metric"],
            quality["metric"],
            list(metrics),
            f" for {task} data",
        )
    higher, _ = metrics[quality["metric"]]
    want, other = ("min", "max") if higher else ("max", "min")
    better = f"{quality['metric']} is {'higher' if higher else 'lower'}-is-better"
    if quality[want] is None:
        raise RecipeError(
            f"{origin}: [quality] {better} and needs {want} = …",
            f"write {want} = <the bar this recipe reaches>" + (f" (not {other})" if quality[other] is not None else ""),
        )
    if quality[other] is not None:
        raise RecipeError(
            f"{_where(origin, 'quality', other, origins)}: {better}",
            f"give the bar as {want} = …, not {other}",
        )
    export = _check_section(origin, "export", raw.get("export", {}), SCHEMAS["export"], origins)
    engine = _check_section(origin, "engine", raw.get("engine", {}), SCHEMAS["engine"], origins)
    for axis in ("batch", "seq", "src_seq"):
        if engine[axis] is not None:
            parse_profile(engine[axis], _where(origin, "engine", axis, origins))
    return Recipe(
        name=head["name"],
        description=head["description"],
        data=data,
        model=model,
        train=train,
        quality=quality,
        export=export,
        engine=engine,
    )
