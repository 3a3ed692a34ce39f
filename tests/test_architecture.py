"""The import rules of README's "Architecture" section, checked by parsing every module with ast.

1. Layers run one way: a module imports only from its own layer or the layers below it
   (LAYERS: core < models, files and runtimes < workflows < commands). A module in no layer fails,
   so a new top-level module or package has to be placed.
2. The deploy side (every module outside TORCH_SIDE) never imports torch, nor a torch-side
   module, at module level; inside a function only the modules in TORCH_OPTIONAL import torch
   itself (each says why).
3. The CLI (rnndeploy/cli/) parses and calls: it imports click, the standard library and public
   names of rnndeploy — no private name (``_x``), no numpy/onnx/runtime package of its own.
4. No test module imports another test module (or conftest): shared helpers live in
   tests/helpers.py, tests/fakes/ and the other non-test modules of tests/, fixtures in conftest.py.

Each checker runs on the real tree and on a small planted package (tmp_path), which must fail.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import pytest

from tests.helpers import REPO, TORCH_SIDE

# Lowest first. A unit is a top-level module (``spec``) or a subpackage (``backends/``).
LAYERS: Dict[str, Sequence[str]] = {
    "core": ("rnndeploy", "errors", "validation", "jsonio", "memory", "fileio", "optional", "progress",
             "environment", "cuda", "spec", "inputs", "metrics", "decoding", "input_checks"),
    "models, files and runtimes": ("data/", "models/", "recipe", "task_metrics", "checkpoint", "train", "export/",
                                   "keras/", "artefacts/", "onnx_info", "graph/", "precision", "quantize", "engine/",
                                   "backends/", "onnx_decoding"),
    "workflows": ("parity/", "bench/", "tune/", "triton/", "report/", "campaign/", "demo", "doctor"),
    "commands": ("cli/", "__main__"),
}
# Deploy-side modules that may import torch inside a function, and why.
TORCH_OPTIONAL = {
    "rnndeploy/keras/reference.py": "pins torch's thread count while Keras runs on its torch backend, if present",
    "rnndeploy/campaign/steps.py": "the campaign's torch units; preloads CUDA libraries for onnxruntime-gpu",
    "rnndeploy/campaign/summary.py": "records torch's version and CUDA build in a campaign's environment",
}


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name (``from a import b`` gives "a" here and "b" in names)
    names: tuple
    line: int
    top_level: bool  # runs at import time (not inside a function)


@dataclass(frozen=True)
class Module:
    name: str  # "rnndeploy.parity.harness"
    rel: str  # "rnndeploy/parity/harness.py"
    tree: ast.Module


def modules(root: Path, package: str) -> List[Module]:
    out = []
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        name = rel[: -len(".py")].replace("/", ".")
        name = name[: -len(".__init__")] if name.endswith(".__init__") else name
        out.append(Module(name, rel, ast.parse(path.read_text(), rel)))
    return out


def imports(mod: Module) -> Iterator[Import]:
    """Every import statement of ``mod``, relative ones made absolute."""
    is_package = mod.rel.endswith("__init__.py")

    def walk(node: ast.AST, top: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for a in child.names:
                    yield Import(a.name, (), child.lineno, top)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = mod.name.split(".")
                    keep = len(parts) - child.level + (1 if is_package else 0)
                    base = ".".join(parts[:keep] + ([base] if base else []))
                yield Import(base, tuple(a.name for a in child.names), child.lineno, top)
            yield from walk(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    yield from walk(mod.tree, True)


def unit_of(name: str, root: Path) -> Optional[str]:
    """"spec" for rnndeploy.spec, "backends/" for rnndeploy.backends.x, "rnndeploy" for the package itself."""
    parts = name.split(".")
    if len(parts) == 1:
        return parts[0]
    if (root / parts[0] / parts[1]).is_dir():
        return parts[1] + "/"
    return parts[1]


def imported_modules(imp: Import, root: Path) -> List[str]:
    """The modules an import loads: ``from pkg import sub`` counts ``pkg.sub`` when sub is a module."""
    out = [imp.module]
    for n in imp.names:
        candidate = Path(root, *imp.module.split("."), n)
        if candidate.is_dir() or candidate.with_suffix(".py").is_file():
            out.append(f"{imp.module}.{n}")
    return out


def layer_violations(root: Path, package: str, layers: Mapping[str, Sequence[str]]) -> List[str]:
    rank = {u: i for i, units in enumerate(layers.values()) for u in units}
    names = list(layers)
    problems = []
    for mod in modules(root, package):
        here = unit_of(mod.name, root)
        if here not in rank:
            problems.append(f"{mod.rel}: {here} is in no layer (add it to LAYERS and README's Architecture)")
            continue
        for imp in imports(mod):
            for target in imported_modules(imp, root):
                if target.split(".")[0] != package:
                    continue
                there = unit_of(target, root)
                if there in rank and rank[there] > rank[here]:
                    problems.append(f"{mod.rel}:{imp.line}: {here} ({names[rank[here]]}) imports {target} "
                                    f"({names[rank[there]]}), a layer above it")
    return problems


def _torch_side(rel: str, torch_side: Sequence[str]) -> bool:
    return any(rel == p or rel.startswith(p) for p in torch_side)


def _module_path(name: str, root: Path) -> Optional[str]:
    p = Path(*name.split("."))
    if (root / p).with_suffix(".py").is_file():
        return p.with_suffix(".py").as_posix()
    if (root / p / "__init__.py").is_file():
        return (p / "__init__.py").as_posix()
    return None


def torch_violations(root: Path, package: str, torch_side: Sequence[str], optional: Mapping[str, str]) -> List[str]:
    problems = []
    for mod in modules(root, package):
        if _torch_side(mod.rel, torch_side):
            continue
        for imp in imports(mod):
            for target in imported_modules(imp, root):
                is_torch = target.split(".")[0] == "torch"
                path = _module_path(target, root)
                torch_module = path is not None and _torch_side(path, torch_side)
                if imp.top_level and (is_torch or torch_module):
                    problems.append(f"{mod.rel}:{imp.line}: deploy-side module imports {target} at module level")
                elif is_torch and mod.rel not in optional:
                    problems.append(f"{mod.rel}:{imp.line}: deploy-side module imports torch "
                                    "(only TORCH_OPTIONAL modules may, inside a function)")
    return problems


def cli_violations(root: Path, cli_dir: str) -> List[str]:
    package = cli_dir.split("/")[0]
    stdlib = getattr(sys, "stdlib_module_names", None)  # Python >= 3.10; on 3.9 this part is not checked
    problems = []
    for mod in modules(root, cli_dir):
        bound: Dict[str, str] = {}  # local name → rnndeploy module it stands for
        for imp in imports(mod):
            top = imp.module.split(".")[0]
            if stdlib is not None and top not in stdlib and top not in ("click", package, "__future__"):
                problems.append(f"{mod.rel}:{imp.line}: the CLI imports {imp.module} (library work belongs in "
                                f"{package}/, called from the command)")
            if top != package:
                continue
            if any(part.startswith("_") and part != "__init__" for part in imp.module.split(".")):
                problems.append(f"{mod.rel}:{imp.line}: imports the private module {imp.module}")
            for n in imp.names:
                if n.startswith("_") and n != "__version__":
                    problems.append(f"{mod.rel}:{imp.line}: imports the private name {imp.module}.{n}")
            for target in imported_modules(imp, root)[1:]:
                bound[target.rsplit(".", 1)[1]] = target
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == package and a.asname:
                        bound[a.asname] = a.name
        for node in ast.walk(mod.tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                problems.append(f"{mod.rel}:{node.lineno}: uses the private name {bound[node.value.id]}.{node.attr}")
    return problems


def cross_test_imports(tests_dir: Path) -> List[str]:
    problems = []
    for path in sorted(tests_dir.rglob("*.py")):
        rel = path.relative_to(tests_dir.parent).as_posix()
        mod = Module(rel[:-3].replace("/", "."), rel, ast.parse(path.read_text(), rel))
        for imp in imports(mod):
            for target in imported_modules(imp, tests_dir.parent):
                parts = target.split(".")
                if parts[0] == tests_dir.name and len(parts) > 1 and (parts[-1].startswith("test_")
                                                                      or parts[-1] == "conftest"):
                    problems.append(f"{rel}:{imp.line}: imports the test module {target} "
                                    "(move what it shares to tests/helpers.py, tests/fakes/ or a conftest fixture)")
    return problems


# -- the real tree ------------------------------------------------------------------------------------------
def test_every_layer_unit_exists():
    for units in LAYERS.values():
        for u in units:
            path = REPO / "rnndeploy" / (u if u.endswith("/") else f"{u}.py")
            assert u == "rnndeploy" or path.exists(), u  # a stale entry would place nothing
    for rel in TORCH_OPTIONAL:
        assert (REPO / rel).is_file(), rel


def test_layers_run_one_way():
    assert layer_violations(REPO, "rnndeploy", LAYERS) == []


def test_deploy_side_never_imports_torch_at_module_level():
    assert torch_violations(REPO, "rnndeploy", TORCH_SIDE, TORCH_OPTIONAL) == []


def test_cli_imports_only_public_library_names():
    assert cli_violations(REPO, "rnndeploy/cli") == []


def test_no_test_module_imports_another():
    assert cross_test_imports(REPO / "tests") == []


# -- the checkers catch planted violations ------------------------------------------------------------------
def _package(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


PLANTED_LAYERS = {"core": ("pkg", "spec"), "runtimes": ("backends/", "heavy"), "workflows": ("parity/",),
                  "commands": ("cli/",)}


def test_layer_checker_catches_an_upward_import(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/spec.py": "def f():\n    from pkg.parity import run  # upward, even inside a function\n",
        "pkg/backends/__init__.py": "from pkg import spec\nfrom . import base\n",
        "pkg/backends/base.py": "from ..spec import f\n",
        "pkg/parity/__init__.py": "from pkg.backends import base\nrun = None\n",
        "pkg/cli/__init__.py": "from pkg.parity import run\n",
        "pkg/stray.py": "",
    })
    problems = layer_violations(root, "pkg", PLANTED_LAYERS)
    assert any(p.startswith("pkg/spec.py:2: spec (core) imports pkg.parity (workflows)") for p in problems), problems
    assert any(p.startswith("pkg/stray.py: stray is in no layer") for p in problems), problems
    assert len(problems) == 2, problems  # downward and relative imports are fine


def test_torch_checker_catches_module_level_and_unlisted_imports(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/train.py": "import torch\n",  # torch side: allowed
        "pkg/runner.py": "import torch.nn as nn\n",
        "pkg/report.py": "from pkg import train\n",  # a torch-side module at module level
        "pkg/probe.py": "def version():\n    import torch\n    return torch.__version__\n",
        "pkg/listed.py": "def version():\n    import torch\n    return torch.__version__\n",
        "pkg/lazy.py": "def fit():\n    from pkg.train import fit\n    return fit()\n",  # lazy: fine
    })
    problems = torch_violations(root, "pkg", ("pkg/train.py",), {"pkg/listed.py": "probes"})
    assert problems == [
        "pkg/probe.py:2: deploy-side module imports torch (only TORCH_OPTIONAL modules may, inside a function)",
        "pkg/report.py:1: deploy-side module imports pkg.train at module level",
        "pkg/runner.py:1: deploy-side module imports torch.nn at module level",
    ], problems


def test_cli_checker_catches_private_names_and_library_packages(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/lib.py": "def run():\n    pass\ndef _helper():\n    pass\n",
        "pkg/cli/__init__.py": "import click\nimport json\nfrom pkg.lib import run\n",
        "pkg/cli/bad.py": ("import numpy as np\nfrom pkg.lib import _helper\nfrom pkg import lib\n"
                           "import pkg.lib as L\nlib._helper()\nL._helper()\n"),
    })
    problems = cli_violations(root, "pkg/cli")
    assert any("bad.py:2: imports the private name pkg.lib._helper" in p for p in problems), problems
    assert any("bad.py:5: uses the private name pkg.lib._helper" in p for p in problems), problems
    assert any("bad.py:6: uses the private name pkg.lib._helper" in p for p in problems), problems
    if hasattr(sys, "stdlib_module_names"):  # Python >= 3.10 tells the standard library apart
        assert any("bad.py:1: the CLI imports numpy" in p for p in problems), problems
    assert not any("__init__.py" in p for p in problems), problems


def test_test_module_checker_catches_a_test_importing_a_test(tmp_path):
    root = _package(tmp_path, {
        "tests/__init__.py": "",
        "tests/helpers.py": "X = 1\n",
        "tests/conftest.py": "from tests.helpers import X\n",
        "tests/test_a.py": "from tests.helpers import X\nZOO = {}\n",
        "tests/test_b.py": "from tests.test_a import ZOO\n",
        "tests/test_c.py": "def test_c():\n    from tests.conftest import X\n",
        "tests/test_d.py": "from tests import test_a\n",
    })
    problems = cross_test_imports(root / "tests")
    assert [p.split(":")[0] + ":" + p.split(":")[1] for p in problems] == \
        ["tests/test_b.py:1", "tests/test_c.py:2", "tests/test_d.py:1"], problems


@pytest.mark.parametrize("rule", ["layers", "torch", "cli", "tests"])
def test_a_planted_violation_in_a_copy_of_the_tree_fails(tmp_path, rule):
    """The same checkers, run on a copy of the real rnndeploy/ and tests/ with one line added."""
    import shutil

    shutil.copytree(REPO / "rnndeploy", tmp_path / "rnndeploy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__", "data"))
    plant = {
        "layers": ("rnndeploy/spec.py", "from rnndeploy.report import render_text\n"),
        "torch": ("rnndeploy/backends/onnxrt.py", "import torch\n"),
        "cli": ("rnndeploy/cli/bench.py", "from rnndeploy.bench.sweep import _check_config\n"),
        "tests": ("tests/test_demo.py", "from tests.test_doctor import run_cli\n"),
    }[rule]
    path = tmp_path / plant[0]
    path.write_text(path.read_text() + plant[1])
    found = {
        "layers": lambda: layer_violations(tmp_path, "rnndeploy", LAYERS),
        "torch": lambda: torch_violations(tmp_path, "rnndeploy", TORCH_SIDE, TORCH_OPTIONAL),
        "cli": lambda: cli_violations(tmp_path, "rnndeploy/cli"),
        "tests": lambda: cross_test_imports(tmp_path / "tests"),
    }[rule]()
    assert len(found) == 1 and found[0].startswith(plant[0]), found
