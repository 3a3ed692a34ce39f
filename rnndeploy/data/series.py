"""Forecasting datasets: the seeds' noisy two-frequency sine, monthly sunspots, a user's CSV.

Every forecasting loader returns windows ``x [N, window, F]`` and targets ``y``: the next
``horizon`` values of the target column after the window (``targets = "last"``, shape
``[N, horizon]``) or after every step of it (``targets = "sequence"``, shape
``[N, window, horizon]``, the Keras ``return_sequences=True`` form). ``baseline`` holds
the persistence forecast (the last observed value, repeated) so every metric can be
read against it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.data.base import (
    Dataset,
    Param,
    fraction_params,
    require_columns,
    split_counts,
    user_file,
    vendored_file,
)
from rnndeploy.errors import DataError
from rnndeploy.memory import check_fits

SUNSPOTS_FILE = "sunspots_monthly.csv"
SUNSPOTS_SHA256 = "b3017cdc7608f999f7a77f1f51c3ab20d171118b458dbfabf7160381babcddd6"

TARGET_MODES = ("last", "sequence")


def _window_params(window: int, horizon: int = 1) -> Dict[str, Param]:
    return {
        "window": Param("int", window, "input steps per example", minimum=1),
        "horizon": Param("int", horizon, "how many future values to predict (k-step ahead)", minimum=1),
        "targets": Param("str", "last", "predict after the last step only, or after every step", choices=TARGET_MODES),
    }


# -- the seeds' sine ------------------------------------------------------------------------
SINE_PARAMS: Dict[str, Param] = {
    "n_series": Param("int", 10000, "number of independent series generated", minimum=3),
    "seed": Param("int", 42, "generator seed (independent of the training seed)", minimum=0),
    **_window_params(50),
    **fraction_params(0.2, 0.1),
}


def generate_sine(n_series: int, n_steps: int, rng: np.random.Generator) -> np.ndarray:
    """The two-frequency noisy sine of Géron, Hands-On ML, ch. 15 (Keras RNN tutorial).

    ``0.5·sin((t − o1)·(f1·10 + 10)) + 0.2·sin((t − o2)·(f2·20 + 20)) + 0.1·(U − 0.5)`` with
    t evenly spaced on [0, 1] and f1, f2, o1, o2, U uniform on [0, 1). Returns
    ``[n_series, n_steps]`` float32; values stay within about ±0.75.
    """
    freq1, freq2, off1, off2 = rng.random((4, n_series, 1))
    t = np.linspace(0.0, 1.0, n_steps)
    series = 0.5 * np.sin((t - off1) * (freq1 * 10 + 10))
    series += 0.2 * np.sin((t - off2) * (freq2 * 20 + 20))
    series += 0.1 * (rng.random((n_series, n_steps)) - 0.5)
    return series.astype(np.float32)


def load_sine(p: Dict[str, Any]) -> Dataset:
    window, horizon, mode = p["window"], p["horizon"], p["targets"]
    # series (float64 draws, float32 copy), x, and y (horizon copies in "sequence" mode)
    check_fits(p["n_series"] * (window + horizon) * (8 * 3 + 4 * (1 + horizon)),
               f"generating {p['n_series']} sine series of {window + horizon} steps", "use a smaller window or n_series")
    series = generate_sine(p["n_series"], window + horizon, np.random.default_rng(p["seed"]))
    x = series[:, :window, None]
    if mode == "last":
        y = series[:, window:]
        baseline = np.repeat(x[:, -1, :], horizon, axis=1)
    else:
        # y[n, t, j] = series[n, t + 1 + j]: the next `horizon` values after every step
        y = np.stack([series[:, 1 + j : window + 1 + j] for j in range(horizon)], axis=-1)
        baseline = np.repeat(x, horizon, axis=2)
    n_train, n_val, _ = split_counts(len(series), p["val_fraction"], p["test_fraction"], "sine")
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(series))}
    splits = {
        s: {"x": x[a:b].copy(), "y": y[a:b].astype(np.float32), "baseline": baseline[a:b].astype(np.float32)}
        for s, (a, b) in bounds.items()
    }
    info = _regression_info("sine", 1, horizon, window, mode, None, feature_names=["value"], target="value")
    info["input_range"] = input_range(splits["train"]["x"])
    return Dataset("sine", "regression", splits, info)


# -- real series ------------------------------------------------------------------------------
SUNSPOTS_PARAMS: Dict[str, Param] = {
    **_window_params(48),
    **fraction_params(0.15, 0.15),
}


def read_sunspots() -> Tuple[List[str], np.ndarray]:
    """(months "YYYY-MM", values) of the vendored monthly mean sunspot numbers, 1749-01..2009-06."""
    path = vendored_file(SUNSPOTS_FILE, SUNSPOTS_SHA256)
    rows = _read_csv_columns(path, ["month", "sunspots"], {"column": "sunspots"})
    return rows["month"], np.asarray([float(v) for v in rows["sunspots"]], dtype=np.float64)


def load_sunspots(p: Dict[str, Any]) -> Dataset:
    months, values = read_sunspots()
    ds = _windowed(values[:, None], 0, p, "sunspots", ["sunspots"], "sunspots")
    ds.data_info["time_index"] = {"first": months[0], "last": months[-1], "step": "month"}
    return ds


CSV_SERIES_PARAMS: Dict[str, Param] = {
    "path": Param("path", None, "CSV/TSV file with one row per time step, oldest first", required=True),
    "column": Param("str", None, "the column to forecast", required=True),
    "features": Param("str_list", None, "input columns (default: just `column`)"),
    "delimiter": Param("str", None, "field separator (default: tab for .tsv, else comma)"),
    **_window_params(24),
    **fraction_params(0.15, 0.15),
}


def load_csv_series(p: Dict[str, Any]) -> Dataset:
    path = user_file(p["path"], "series file", "a CSV with a header row and one row per time step")
    features = list(p["features"] or [p["column"]])
    if p["column"] not in features:
        features.append(p["column"])
    wanted = {"column": p["column"], **{f"features[{i}]": f for i, f in enumerate(features)}}
    rows = _read_csv_columns(path, features, wanted, p["delimiter"])
    data = np.empty((len(rows[features[0]]), len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        for i, v in enumerate(rows[name]):
            try:
                data[i, j] = float(v)
            except ValueError:
                raise DataError(
                    f"{path}: row {i + 2}, column {name!r} holds {v!r}, not a number",
                    "fill or drop missing values before training",
                ) from None
    if not np.all(np.isfinite(data)):
        bad = int(np.argwhere(~np.isfinite(data))[0][0])
        raise DataError(f"{path}: row {bad + 2} holds NaN or infinity", "fill or drop missing values before training")
    return _windowed(data, features.index(p["column"]), p, path.stem, features, p["column"])


# -- shared windowing ----------------------------------------------------------------------------
def _windowed(
    data: np.ndarray, target_col: int, p: Dict[str, Any], name: str, features: List[str], target: str
) -> Dataset:
    """Chronological split, Z-score with train statistics only, then sliding windows.

    Split boundaries are on target time: a val/test window may look back into the
    previous split for its inputs (as a deployed forecaster would) but never predicts a
    value outside its own split.
    """
    window, horizon, mode = p["window"], p["horizon"], p["targets"]
    n = len(data)
    n_train, n_val, _ = split_counts(n, p["val_fraction"], p["test_fraction"], name)
    mean = data[:n_train].mean(axis=0)
    std = data[:n_train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    z = ((data - mean) / std).astype(np.float32)
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
    splits = {}
    for s, (a, b) in bounds.items():
        arrays = _windows(z, target_col, window, horizon, mode, a, b)
        if len(arrays["x"]) == 0:
            raise DataError(
                f"{name}: the {s} split ({b - a} steps) is too short for window {window} + horizon {horizon}",
                "use a smaller window/horizon or a longer series",
            )
        splits[s] = arrays
    norm = {"mean": [float(m) for m in mean], "std": [float(v) for v in std]}
    info = _regression_info(name, len(features), horizon, window, mode, norm, features, target, target_col)
    info["n_steps"] = {"train": n_train, "val": n_val, "test": n - n_train - n_val}
    info["input_range"] = input_range(splits["train"]["x"])
    return Dataset(name, "regression", splits, info)


def input_range(x: np.ndarray) -> List[float]:
    """[low, high] of the training inputs, widened to multiples of 0.5: the range parity
    draws generated inputs from, so deployment is checked where the model was trained."""
    return [float(np.floor(x.min() * 2) / 2), float(np.ceil(x.max() * 2) / 2)]


def _windows(z: np.ndarray, tc: int, window: int, horizon: int, mode: str, a: int, b: int) -> Dict[str, np.ndarray]:
    """Windows whose every target index lies in [a, b)."""
    if mode == "last":
        starts = np.arange(max(0, a - window), b - window - horizon + 1)
    else:
        starts = np.arange(max(0, a - 1), b - window - horizon + 1)
    if len(starts) == 0:
        empty = np.zeros((0, window, z.shape[1]), np.float32)
        return {"x": empty, "y": np.zeros((0, horizon), np.float32), "baseline": np.zeros((0, horizon), np.float32)}
    check_fits(len(starts) * window * (z.shape[1] + horizon) * 4 * 2,
               f"{len(starts)} windows of {window} steps", "use a smaller window")
    idx = starts[:, None] + np.arange(window)[None, :]
    x = z[idx]  # [N, window, F]
    if mode == "last":
        y = z[starts[:, None] + window + np.arange(horizon)[None, :], tc]
        baseline = np.repeat(x[:, -1, tc : tc + 1], horizon, axis=1)
    else:
        # [N, window, horizon]: y[n, t, j] = z[start + t + 1 + j]
        tidx = idx[:, :, None] + 1 + np.arange(horizon)[None, None, :]
        y = z[tidx, tc]
        baseline = np.repeat(x[:, :, tc : tc + 1], horizon, axis=2)
    return {"x": x.astype(np.float32), "y": y.astype(np.float32), "baseline": baseline.astype(np.float32)}


def _regression_info(
    name: str,
    n_features: int,
    horizon: int,
    window: int,
    mode: str,
    norm: Optional[Dict[str, List[float]]],
    feature_names: Sequence[str],
    target: str,
    target_col: int = 0,
) -> Dict[str, Any]:
    target_norm = None if norm is None else {"mean": norm["mean"][target_col], "std": norm["std"][target_col]}
    return {
        "task": "regression",
        "dataset": name,
        "input_size": n_features,
        "output_size": horizon,
        "horizon": horizon,
        "window": window,
        "targets": mode,
        "return_sequences": mode == "sequence",
        "feature_names": list(feature_names),
        "target": target,
        "target_index": target_col,
        # Z-score statistics from the train split: x_norm = (x - mean) / std, per feature.
        "normalization": norm,
        "target_normalization": target_norm,
    }


def denormalize(values: np.ndarray, data_info: Dict[str, Any]) -> np.ndarray:
    """Model-space targets/predictions → original units (identity when not normalised)."""
    tn = data_info.get("target_normalization")
    if not tn:
        return np.asarray(values, dtype=np.float64)
    return np.asarray(values, dtype=np.float64) * tn["std"] + tn["mean"]


def _read_csv_columns(
    path: Path, columns: Sequence[str], wanted: Dict[str, str], delimiter: Optional[str] = None
) -> Dict[str, List[str]]:
    delim = delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=delim)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path} is empty", "give a CSV with a header row")
            header = [h.strip() for h in header]
            require_columns(header, wanted, path)
            idx = [header.index(c) for c in columns]
            out: Dict[str, List[str]] = {c: [] for c in columns}
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) < len(header):
                    raise DataError(f"{path}: line {lineno} has {len(row)} fields, the header has {len(header)}")
                for c, i in zip(columns, idx):
                    out[c].append(row[i].strip())
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason})", "save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not a readable CSV: {exc}") from None
    if not out[columns[0]]:
        raise DataError(f"{path} has a header but no data rows")
    return out
