"""Progress bars for long loops (training epochs, benchmark sweeps, engine builds).

One helper so every stage looks the same: bars go to stderr (stdout stays clean for
results and JSON) and are silent when stderr is not a terminal unless forced.
"""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, Optional, TypeVar

import click

T = TypeVar("T")


def progress(items: Iterable[T], label: str, length: Optional[int] = None, enabled: Optional[bool] = None) -> Iterator[T]:
    """Iterate over ``items`` showing a bar labelled ``label`` on stderr.

    Args:
        enabled: None (default) shows the bar only when stderr is a terminal.
    """
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        yield from items
        return
    with click.progressbar(items, length=length, label=label, file=sys.stderr, show_pos=True) as bar:
        yield from bar
