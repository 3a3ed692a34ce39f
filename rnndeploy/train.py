"""Recipe → trained checkpoint: seeded, early-stopped, gradient-clipped, measured.

    from rnndeploy.recipe import load_recipe
    from rnndeploy.train import train_recipe
    result = train_recipe(load_recipe("sine"), "runs/sine")
    result.quality.passed, result.metrics["test"]["mse"]

Reproducible on CPU: the seed fixes weight init (``build_model(..., seed)``), the
shuffling order (a numpy generator) and dropout (torch's generator, forked so the
caller's RNG state is untouched) — the same recipe and seed give bit-identical weights
with the same torch build and thread count.

Each epoch trains on the (shuffled) train split, then evaluates the validation split;
the monitored metric is the recipe's quality metric on validation. Early stopping
restores the best epoch's weights. Final metrics on val and test come from those
weights, and the quality verdict compares the recipe's bar with them.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Union

import numpy as np

from rnndeploy.data import Dataset, load_dataset
from rnndeploy.errors import RecipeError
from rnndeploy.optional import require
from rnndeploy.progress import progress as progress_bar
from rnndeploy.recipe import METRICS, QualityBar, Recipe
from rnndeploy.task_metrics import TokenScores, classification_metrics, greedy_metrics, regression_metrics

EVAL_BATCH = 512
Log = Callable[[str], None]


# -- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EpochRecord:
    """One epoch: mean training loss, validation metrics, learning rate, wall time (s)."""

    epoch: int
    train_loss: float
    val: Dict[str, float]
    lr: float
    seconds: float
    improved: bool

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QualityVerdict:
    """The recipe's bar against the measured value."""

    metric: str
    split: str
    bound: float
    higher_is_better: bool
    value: float
    passed: bool

    def describe(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        word = "PASSED" if self.passed else "MISSED"
        return f"quality {word}: {self.split} {self.metric} = {self.value:.6g} (bar {op} {self.bound:g})"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced. ``metrics`` = {"val": {...}, "test": {...}} at the best epoch."""

    recipe: Recipe
    checkpoint_dir: Optional[str]
    epochs_run: int
    best_epoch: int
    stopped: str  # "epochs" | "early_stopping" | "max_minutes" | "diverged"
    history: List[EpochRecord]
    metrics: Dict[str, Dict[str, float]]
    quality: QualityVerdict
    seconds: float
    dataset: str
    sizes: Dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "recipe": self.recipe.name,
            "checkpoint_dir": self.checkpoint_dir,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "stopped": self.stopped,
            "history": [h.to_dict() for h in self.history],
            "metrics": self.metrics,
            "quality": self.quality.to_dict(),
            "seconds": self.seconds,
            "dataset": self.dataset,
            "sizes": self.sizes,
        }


# -- tasks: batching, loss and metrics per data task -------------------------------------------------
class Task:
    """How one data task feeds its model family: batches, loss, evaluation."""

    def __init__(self, data_info: Mapping[str, Any]):
        self.data_info = dict(data_info)

    def loss(self, model: Any, batch: Dict[str, Any]) -> Any:
        raise NotImplementedError

    def evaluate(
        self, model: Any, arrays: Mapping[str, np.ndarray], metric: str, final: bool = False
    ) -> Dict[str, float]:
        """Metrics of ``model`` on one split; ``final`` adds the costly ones (greedy decoding)."""
        raise NotImplementedError

    def check(self, model: Any) -> None:
        """Raise RecipeError when the model cannot learn this data as configured."""


class RegressionTask(Task):
    def check(self, model: Any) -> None:
        out = model.config.get("output", "last")
        want = "sequence" if self.data_info.get("return_sequences") else "last"
        if out != want:
            raise RecipeError(
                f"[model] output = {out!r} but [data] targets = {self.data_info.get('targets')!r}",
                f'set [model] output = "{want}" or [data] targets = "{out}"',
            )

    def loss(self, model: Any, batch: Dict[str, Any]) -> Any:
        torch = require("torch")
        return torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])

    def evaluate(
        self, model: Any, arrays: Mapping[str, np.ndarray], metric: str, final: bool = False
    ) -> Dict[str, float]:
        pred = _predict(model, arrays, lambda b: model(b["x"]), ("x",))
        return regression_metrics(pred, arrays["y"], arrays["baseline"], self.data_info)


class ClassificationTask(Task):
    def loss(self, model: Any, batch: Dict[str, Any]) -> Any:
        torch = require("torch")
        return torch.nn.functional.cross_entropy(model(batch["tokens"], batch["lengths"]), batch["labels"])

    def evaluate(
        self, model: Any, arrays: Mapping[str, np.ndarray], metric: str, final: bool = False
    ) -> Dict[str, float]:
        logits = _predict(model, arrays, lambda b: model(b["tokens"], b["lengths"]), ("tokens", "lengths"))
        return classification_metrics(logits, arrays["labels"])


class LanguageModelTask(Task):
    def loss(self, model: Any, batch: Dict[str, Any]) -> Any:
        torch = require("torch")
        logits = model(batch["inputs"])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1))

    def evaluate(
        self, model: Any, arrays: Mapping[str, np.ndarray], metric: str, final: bool = False
    ) -> Dict[str, float]:
        scores = TokenScores()
        for b in _eval_batches(arrays, ("inputs", "targets")):
            scores.add(model(b["inputs"]).detach().cpu().numpy(), b["targets"].numpy())
        return scores.lm_metrics()


class Seq2SeqTask(Task):
    GREEDY = ("greedy_token_accuracy", "sequence_accuracy")

    def loss(self, model: Any, batch: Dict[str, Any]) -> Any:
        torch = require("torch")
        logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"])
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            batch["tgt_out"].reshape(-1),
            ignore_index=int(self.data_info["pad_id"]),
        )

    def evaluate(
        self, model: Any, arrays: Mapping[str, np.ndarray], metric: str, final: bool = False
    ) -> Dict[str, float]:
        scores = TokenScores(ignore=int(self.data_info["pad_id"]))
        for b in _eval_batches(arrays, ("src", "src_lengths", "tgt_in", "tgt_out")):
            logits = model(b["src"], b["src_lengths"], b["tgt_in"])
            scores.add(logits.detach().cpu().numpy(), b["tgt_out"].numpy())
        out = scores.seq2seq_metrics()
        # Greedy decoding runs the decoder step by step: per epoch only when it is monitored.
        if final or metric in self.GREEDY:
            out.update(self.greedy_metrics(model, arrays))
        return out

    def greedy_metrics(self, model: Any, arrays: Mapping[str, np.ndarray]) -> Dict[str, float]:
        """Exact-match and position-wise accuracy of greedy decodes against tgt_out."""
        max_len = int(arrays["tgt_out"].shape[1])
        decoded = [row for b in _eval_batches(arrays, ("src", "src_lengths"))
                   for row in greedy_decode(model, b["src"], b["src_lengths"], max_len)]
        return greedy_metrics(decoded, arrays["tgt_out"], int(self.data_info["eos_id"]), int(self.data_info["pad_id"]))


TASK_CLASSES = {
    "regression": RegressionTask,
    "classification": ClassificationTask,
    "language_model": LanguageModelTask,
    "seq2seq": Seq2SeqTask,
}


def greedy_decode(model: Any, src: Any, src_lengths: Any, max_len: int) -> List[List[int]]:
    """Greedy decodes (token ids, eos included when produced) through the zoo model's decoder."""
    out = model.greedy_decode(src, src_lengths, max_len=max_len)
    tokens = out[0] if isinstance(out, tuple) else out
    return [[int(t) for t in row] for row in np.asarray(tokens.cpu() if hasattr(tokens, "cpu") else tokens)]


def _eval_batches(arrays: Mapping[str, np.ndarray], names: tuple) -> Iterator[Dict[str, Any]]:
    torch = require("torch")
    n = len(arrays[names[0]])
    for start in range(0, n, EVAL_BATCH):
        sl = slice(start, min(n, start + EVAL_BATCH))
        batch: Dict[str, Any] = {k: torch.from_numpy(np.ascontiguousarray(arrays[k][sl])) for k in names}
        batch["_slice"] = sl
        yield batch


def _predict(
    model: Any, arrays: Mapping[str, np.ndarray], fn: Callable[[Dict[str, Any]], Any], names: tuple
) -> np.ndarray:
    outs = [fn(b).detach().cpu().numpy() for b in _eval_batches(arrays, names)]
    return np.concatenate(outs, axis=0)


# -- the loop ----------------------------------------------------------------------------------------
def train_recipe(
    recipe: Recipe,
    out_dir: Optional[Union[str, Path]] = None,
    *,
    log: Optional[Log] = None,
    show_progress: Optional[bool] = None,
    dataset: Optional[Dataset] = None,
) -> TrainResult:
    """Train ``recipe`` and write its checkpoint to ``out_dir`` (skipped when None).

    Args:
        log: called with one line per epoch and a summary (default: silent).
        show_progress: a batch progress bar on stderr; None shows it only on a terminal.
        dataset: an already loaded dataset (default: load ``recipe.data``).

    Returns:
        TrainResult with history, best-epoch metrics on val and test, and the verdict.
    """
    torch = require("torch", "training")
    from rnndeploy.models import build_model

    say = log or (lambda _line: None)
    t0 = time.perf_counter()
    if out_dir is not None:
        from rnndeploy.checkpoint import check_output_dir

        check_output_dir(out_dir)  # fail before training, not after
    ds = dataset if dataset is not None else load_dataset(recipe.data)
    recipe = _with_data_facts(recipe, ds)
    task = TASK_CLASSES[ds.task](ds.data_info)
    tc = recipe.train
    bar = recipe.quality_bar
    monitor_higher, _ = METRICS[ds.task][bar.metric]

    check_training_fits(recipe, ds)  # before any weight is allocated
    old_threads = torch.get_num_threads()
    if tc["threads"]:
        torch.set_num_threads(int(tc["threads"]))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(tc["seed"]))
            model = build_model(recipe.model, ds.data_info, seed=int(tc["seed"]))
            task.check(model)
            say(
                f"{recipe.name}: {ds.describe()}; model {model.config['name']} "
                f"({sum(p.numel() for p in model.parameters()):,} parameters); seed {tc['seed']}"
            )
            loop = _fit(model, task, ds, recipe, bar, monitor_higher, say, show_progress)
        model.eval()
        with torch.no_grad():
            metrics = {s: task.evaluate(model, ds.splits[s], bar.metric, final=True) for s in ("val", "test")}
    finally:
        torch.set_num_threads(old_threads)
    value = metrics[bar.split][bar.metric]
    verdict = QualityVerdict(
        bar.metric, bar.split, bar.bound, bar.higher_is_better, float(value), bool(bar.passed(value))
    )
    seconds = time.perf_counter() - t0
    result = TrainResult(
        recipe=recipe,
        checkpoint_dir=str(out_dir) if out_dir is not None else None,
        epochs_run=len(loop["history"]),
        best_epoch=loop["best_epoch"],
        stopped=loop["stopped"],
        history=loop["history"],
        metrics=metrics,
        quality=verdict,
        seconds=seconds,
        dataset=ds.name,
        sizes=ds.sizes(),
    )
    if out_dir is not None:
        from rnndeploy.checkpoint import save_checkpoint

        save_checkpoint(out_dir, model, recipe, model.data_info, result)
    say(summary_line(ds.task, metrics[bar.split], bar.split))
    say(verdict.describe())
    return result


def check_training_fits(recipe: Recipe, ds: Dataset) -> None:
    """Refuse (UsageError) a model + batch that cannot fit in this machine's memory.

    The model is built on torch's "meta" device (no memory) to count its parameters;
    the estimate is weights + gradients + two Adam moments (float32) plus three times
    the recurrent activations of one batch (forward outputs, gates, their gradients).
    """
    import torch

    from rnndeploy.memory import activation_bytes, check_fits
    from rnndeploy.models import build_model

    with torch.device("meta"):
        meta = build_model(recipe.model, ds.data_info)
    params = sum(int(p.numel()) for p in meta.parameters())
    seq = max((int(a.shape[1]) for a in ds.splits.get("train", {}).values() if getattr(a, "ndim", 0) >= 2), default=1)
    batch = int(recipe.train["batch_size"])
    need = params * 4 * 4 + 3 * activation_bytes(dict(meta.config), {"batch": batch, "seq": seq})
    check_fits(need, f"training {meta.config.get('name', 'the model')} ({params:,} parameters, batch {batch}, seq {seq})",
               "use a smaller hidden_size / num_layers / embedding_dim or batch_size")


def summary_line(task: str, m: Mapping[str, float], split: str = "test") -> str:
    """The headline metrics of one split, with the baseline each task is judged against."""
    if task == "regression":
        return (
            f"{split}: mse {m['mse']:.4g} vs persistence {m['baseline_mse']:.4g} (ratio {m['mse_ratio']:.3f}); "
            f"original units: rmse {m['rmse_orig']:.4g}, mae {m['mae_orig']:.4g} "
            f"(persistence rmse {math.sqrt(m['baseline_mse_orig']):.4g}, mae {m['baseline_mae_orig']:.4g})"
        )
    if task == "classification":
        return (
            f"{split}: accuracy {m['accuracy']:.4f} (majority class {m['majority_accuracy']:.4f}), loss {m['loss']:.4f}"
        )
    if task == "language_model":
        return (
            f"{split}: {m['bits_per_char']:.3f} bits/char, next-char accuracy {m['accuracy']:.3f}, "
            f"perplexity {m['perplexity']:.2f}"
        )
    return (
        f"{split}: token accuracy {m['token_accuracy']:.3f} (teacher-forced); greedy decoding: "
        f"token accuracy {m.get('greedy_token_accuracy', float('nan')):.3f}, "
        f"exact sequences {m.get('sequence_accuracy', float('nan')):.3f}"
    )


def _fit(
    model: Any,
    task: Task,
    ds: Dataset,
    recipe: Recipe,
    bar: QualityBar,
    higher: bool,
    say: Log,
    show_progress: Optional[bool],
) -> Dict[str, Any]:
    torch = require("torch")
    tc = recipe.train
    opt = _optimizer(model, tc)
    rng = np.random.default_rng(int(tc["seed"]))
    train = ds.train
    names = tuple(train)
    n = len(train[names[0]])
    bs = int(tc["batch_size"])
    steps = math.ceil(n / bs)
    if tc["steps_per_epoch"]:
        steps = min(steps, int(tc["steps_per_epoch"]))
    deadline = time.perf_counter() + 60.0 * tc["max_minutes"] if tc["max_minutes"] is not None else None
    best_value: Optional[float] = None
    best_state: Optional[Dict[str, Any]] = None
    best_epoch, bad_epochs = 0, 0
    history: List[EpochRecord] = []
    stopped = "epochs"
    for epoch in range(1, int(tc["epochs"]) + 1):
        t_epoch = time.perf_counter()
        model.train()
        perm = rng.permutation(n)
        losses: List[float] = []
        out_of_time = False
        for step in progress_bar(range(steps), f"epoch {epoch}/{tc['epochs']}", length=steps, enabled=show_progress):
            idx = perm[step * bs : (step + 1) * bs]
            batch = {k: torch.from_numpy(np.ascontiguousarray(train[k][idx])) for k in names}
            opt.zero_grad(set_to_none=True)
            loss = task.loss(model, batch)
            loss.backward()
            if tc["clip_grad_norm"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(tc["clip_grad_norm"]))
            opt.step()
            losses.append(float(loss.detach()))
            if deadline is not None and time.perf_counter() > deadline:
                out_of_time = True
                break
        train_loss = float(np.mean(losses)) if losses else float("nan")
        model.eval()
        with torch.no_grad():
            val = task.evaluate(model, ds.val, bar.metric)
        value = val[bar.metric]
        improved = math.isfinite(value) and (
            best_value is None
            or (value > best_value + tc["min_delta"] if higher else value < best_value - tc["min_delta"])
        )
        if improved:
            best_value, best_epoch, bad_epochs = value, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        lr = opt.param_groups[0]["lr"]
        rec = EpochRecord(epoch, train_loss, val, lr, time.perf_counter() - t_epoch, improved)
        history.append(rec)
        say(_epoch_line(rec, bar.metric, int(tc["epochs"])))
        if not math.isfinite(train_loss):
            stopped = "diverged"
            break
        if out_of_time:
            stopped = "max_minutes"
            break
        if tc["patience"] and bad_epochs >= int(tc["patience"]):
            stopped = "early_stopping"
            break
        if tc["lr_decay"] != 1.0:
            for g in opt.param_groups:
                g["lr"] *= float(tc["lr_decay"])
    if best_state is not None:
        model.load_state_dict(best_state)
    if stopped != "epochs" or best_epoch != len(history):
        say(
            f"stopped: {stopped}; restored the weights of epoch {best_epoch} (val {bar.metric} {best_value:.6g})"
            if best_value is not None
            else f"stopped: {stopped}; no epoch produced a finite val {bar.metric}"
        )
    return {"history": history, "best_epoch": best_epoch, "stopped": stopped}


def _optimizer(model: Any, tc: Mapping[str, Any]) -> Any:
    torch = require("torch")
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = float(tc["lr"]), float(tc["weight_decay"])
    if tc["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if tc["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def _epoch_line(rec: EpochRecord, metric: str, epochs: int) -> str:
    extras = ("mse_ratio", "accuracy", "bits_per_char", "token_accuracy", "sequence_accuracy")
    shown = [metric] + [k for k in extras if k in rec.val and k != metric][:2]
    vals = "  ".join(f"val {k} {rec.val[k]:.5g}" for k in shown)
    star = " *" if rec.improved else ""
    head = f"epoch {rec.epoch:>3}/{epochs}  train loss {rec.train_loss:.5g}"
    return f"{head}  {vals}  lr {rec.lr:.3g}  {rec.seconds:.1f}s{star}"


def _with_data_facts(recipe: Recipe, ds: Dataset) -> Recipe:
    """Fill export.longest_train_seq from the data when the recipe leaves it unset."""
    if recipe.export.get("longest_train_seq"):
        return recipe
    info = ds.data_info
    longest = {
        "regression": info.get("window"),
        "classification": info.get("max_len"),
        "language_model": info.get("seq_len"),
        "seq2seq": max(int(info.get("max_src_len") or 0), int(info.get("max_tgt_len") or 0)) or None,
    }[ds.task]
    return replace(recipe, export={**recipe.export, "longest_train_seq": longest})
