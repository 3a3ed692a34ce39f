"""Tokenisation and vocabularies shared by the text loaders.

Deterministic by construction: vocabularies are ordered by descending count, then
alphabetically, so the same corpus gives the same ids on every machine.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence

from rnndeploy.data.base import UNK_ID

# Lowercase words; an apostrophe inside a word is kept ("it's", "don't").
WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
TOKENIZER_NAME = "words-lower-v1"


def tokenize_words(text: str) -> List[str]:
    """Lowercase word tokens; punctuation and whitespace are separators."""
    return WORD_RE.findall(text.lower())


def build_vocab(
    token_lists: Iterable[Sequence[str]], specials: Sequence[str], min_count: int = 1, max_size: Optional[int] = None
) -> List[str]:
    """Vocabulary (id → token): ``specials`` first, then tokens seen at least
    ``min_count`` times, most frequent first, capped at ``max_size`` entries in total."""
    counts: Counter = Counter()
    for toks in token_lists:
        counts.update(toks)
    ranked = sorted(
        (t for t, c in counts.items() if c >= min_count and t not in specials), key=lambda t: (-counts[t], t)
    )
    vocab = list(specials) + ranked
    return vocab[:max_size] if max_size else vocab


def encode(tokens: Sequence[str], index: Dict[str, int], unk_id: int = UNK_ID) -> List[int]:
    return [index.get(t, unk_id) for t in tokens]


def index_of(vocab: Sequence[str]) -> Dict[str, int]:
    return {t: i for i, t in enumerate(vocab)}
