"""A user's own torch module, named ``path/to/file.py:factory``: the one loader.

``rnndeploy export --model`` and the torch runner (``parity/bench --module``) both load
through ``load_user_module``, so a module that exports also runs: the file's directory
is on ``sys.path`` while it loads (it may import its neighbours), errors in the user's
code become one UsageError naming file and factory, and the factory must return an
``nn.Module`` (returned in eval mode).

torch is imported only when a module is loaded (this file itself is torch-free).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Iterator, Tuple

from rnndeploy.errors import UsageError, first_line


def split_module_ref(ref: str, option: str = "--module") -> Tuple[Path, str]:
    """(file, factory name) of ``"path/to/file.py:factory"``.

    Raises:
        UsageError: no factory, a factory that is not a Python name, a missing file.
    """
    if ":" not in ref:
        raise UsageError(f"{option} {ref!r} names no factory", f"use {option} path/to/file.py:factory")
    file_part, factory = ref.rsplit(":", 1)
    path = Path(file_part)
    if not factory.isidentifier():
        raise UsageError(f"{option} {ref!r}: {factory!r} is not a Python name", f"use {option} path/to/file.py:factory")
    if not path.is_file():
        raise UsageError(f"{option} {ref}: file {path} does not exist", "check the path")
    return path, factory


def load_user_module(ref: str, option: str = "--module") -> Any:
    """Call the factory named by ``ref`` and return the module it builds, in eval mode.

    Args:
        ref: "path/to/file.py:factory".
        option: the command-line option the reference came from, for messages.

    Raises:
        UsageError: see ``split_module_ref``; importing the file or calling the factory
            raised; the factory returned something other than a torch.nn.Module.
        MissingDependencyError: torch is not installed.
    """
    from rnndeploy.optional import require

    torch = require("torch", "loading your module")
    path, factory = split_module_ref(ref, option)
    mod_name = f"_rnndeploy_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, str(path))
    if spec is None or spec.loader is None:
        raise UsageError(f"{option} {ref}: {path} cannot be loaded as a Python module", "give a .py file")
    module = importlib.util.module_from_spec(spec)
    with _on_sys_path(path.parent):
        try:
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # a script's sys.exit() at import is the file's error, not ours
            sys.modules.pop(mod_name, None)
            raise UsageError(
                f"{option} {ref}: importing {path} raised {type(exc).__name__}: {first_line(exc)}",
                "fix the file so that `python " + str(path) + "` runs",
            ) from exc
        fn = getattr(module, factory, None)
        if fn is None or not callable(fn):
            found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
            raise UsageError(f"{option} {ref}: {path} has no callable {factory!r}",
                             f"callables there: {', '.join(found) or 'none'}")
        try:
            net = fn()
        except (Exception, SystemExit) as exc:
            raise UsageError(
                f"{option} {ref}: factory {factory}() raised {type(exc).__name__}: {first_line(exc)}",
                "the factory must build the module (weights loaded) without arguments",
            ) from exc
    if not isinstance(net, torch.nn.Module):
        raise UsageError(
            f"{option} {ref}: factory {factory}() returned a {type(net).__name__}, not a torch.nn.Module",
            "return the module itself",
        )
    return net.eval()


@contextlib.contextmanager
def _on_sys_path(directory: Path) -> Iterator[None]:
    entry = str(directory.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
