"""Character-level language-model datasets: vendored Shakespeare plays, a user's text file.

The text is split by position (first ``1 - val - test`` share for training, then
validation, then test) so no test passage was seen during training, then cut into
windows of ``seq_len + 1`` characters: ``inputs`` = the first ``seq_len``, ``targets``
= the same window shifted by one. The vocabulary is the set of characters of the whole
text, sorted: a character set is a property of the corpus, and a closed set means
generation never meets an id the model has no row for.
"""

from __future__ import annotations

import gzip
import re
from typing import Any, Dict, List

import numpy as np

from rnndeploy.data.base import Dataset, Param, fraction_params, split_counts, user_file, vendored_file
from rnndeploy.errors import DataError

# name -> sha256 of rnndeploy/data/files/shakespeare_<name>.txt.gz (see files/ATTRIBUTION.md)
SHAKESPEARE_PLAYS: Dict[str, str] = {
    "hamlet": "95db58b48d2c2a391a6232f3661003fc5ecd7e2e08a315ca11c82d277be5b79a",
    "julius_caesar": "17ea4a8fa08d790bcacd27c63a15e6f0537776cd97b46daf34dc83cb3bc0a1fc",
    "macbeth": "cc1a54c459bb20b7ce259aa03ee48d6b4964ae2ce9b93606a20252eab910fbac",
    "midsummer_nights_dream": "6a07a5b8d2d5ec86e63da2973cfb771b5ac88a6608fd90123eac06129b854979",
    "othello": "781112cd790c42ddeb61022d31a8e7398197f0886f147e1cc44ed9ee759b6a0c",
    "romeo_and_juliet": "750a71cffd6a2ca67b50c58a3f1285d8c65c3e42db23dcce8b16f7a73ac7c777",
}


def _char_params(seq_len: int = 100) -> Dict[str, Param]:
    return {
        "seq_len": Param("int", seq_len, "characters per training window", minimum=1),
        "stride": Param("int", None, "characters between window starts (default: seq_len, i.e. no overlap)", minimum=1),
        "lowercase": Param("bool", False, "lowercase the text first (smaller vocabulary)"),
        **fraction_params(0.05, 0.05),
    }


SHAKESPEARE_PARAMS: Dict[str, Param] = {
    "plays": Param(
        "str_list", ["macbeth", "julius_caesar"], f"plays to concatenate, from: {', '.join(SHAKESPEARE_PLAYS)}"
    ),
    **_char_params(),
}


def read_play(name: str) -> str:
    """The text of one vendored play (Project Gutenberg headers and licence already stripped)."""
    if name not in SHAKESPEARE_PLAYS:
        raise DataError(f"no vendored play {name!r}", f"choose from: {', '.join(SHAKESPEARE_PLAYS)}")
    path = vendored_file(f"shakespeare_{name}.txt.gz", SHAKESPEARE_PLAYS[name])
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read()


def load_shakespeare(p: Dict[str, Any]) -> Dataset:
    plays = list(p["plays"])
    if not plays:
        raise DataError("[data] plays is empty", f"name at least one of: {', '.join(SHAKESPEARE_PLAYS)}")
    text = "\n\n".join(read_play(n) for n in plays)
    ds = build_char_dataset("shakespeare", text, p)
    ds.data_info["plays"] = plays
    return ds


TEXT_FILE_PARAMS: Dict[str, Param] = {
    "path": Param("path", None, "a UTF-8 text file to model", required=True),
    "strip_gutenberg": Param(
        "bool", True, "drop Project Gutenberg header/licence text around '*** START/END OF' markers"
    ),
    **_char_params(),
}


def load_text_file(p: Dict[str, Any]) -> Dataset:
    path = user_file(p["path"], "text file", "a UTF-8 text file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason})", "convert it to UTF-8 (iconv -t UTF-8)") from None
    if p["strip_gutenberg"]:
        text = strip_gutenberg(text)
    return build_char_dataset(path.stem, text, p)


_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)


def strip_gutenberg(text: str) -> str:
    """The body of a Project Gutenberg e-text: what lies between its START and END markers
    (the whole text when the markers are absent)."""
    start = _START.search(text)
    if start:
        text = text[start.end() :]
    end = _END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip("\n") + "\n"


def build_char_dataset(name: str, text: str, p: Dict[str, Any]) -> Dataset:
    if p["lowercase"]:
        text = text.lower()
    text = text.replace("\r\n", "\n")
    seq_len = p["seq_len"]
    stride = p["stride"] or seq_len
    vocab: List[str] = sorted(set(text))
    if len(vocab) < 2:
        raise DataError(f"{name}: the text has {len(vocab)} distinct characters", "give a real text")
    lut = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((lut[c] for c in text), dtype=np.int64, count=len(text))
    n_train, n_val, _ = split_counts(len(ids), p["val_fraction"], p["test_fraction"], name)
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(ids))}
    splits = {}
    for s, (a, b) in bounds.items():
        part = ids[a:b]
        starts = np.arange(0, len(part) - seq_len, stride)
        if len(starts) == 0:
            raise DataError(
                f"{name}: the {s} split has {len(part)} characters, too few for seq_len {seq_len}",
                "use a shorter seq_len, larger split fractions or a longer text",
            )
        win = starts[:, None] + np.arange(seq_len + 1)[None, :]
        chunk = part[win]
        splits[s] = {"inputs": chunk[:, :-1].copy(), "targets": chunk[:, 1:].copy()}
    info = {
        "task": "language_model",
        "dataset": name,
        "vocab_size": len(vocab),
        "vocab": vocab,
        "seq_len": seq_len,
        "lowercase": bool(p["lowercase"]),
        "n_chars": {"train": n_train, "val": n_val, "test": len(ids) - n_train - n_val},
    }
    return Dataset(name, "language_model", splits, info)


def decode_ids(ids: Any, vocab: List[str]) -> str:
    return "".join(vocab[int(i)] for i in np.asarray(ids).reshape(-1))
