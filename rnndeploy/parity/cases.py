"""Collect the cases of a parity check: the inputs, and the reference outputs when a file holds them.

Where inputs come from (first that applies): a golden directory, an .npz of inputs
(``--inputs``, with ``--expected`` outputs or not), a real data split
(``--inputs-from-recipe``), or generation from the spec at each (batch, seq) shape.
Every file is checked against the graph here, before any runner starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from rnndeploy.backends.base import ModelSource, check_feed
from rnndeploy.fileio import load_npz
from rnndeploy.input_checks import axis_sizes, check_expected, check_input_values, padding_ids
from rnndeploy.inputs import Case, generate_cases, infer_sizes
from rnndeploy.parity.golden import check_golden_matches, load_golden

Outputs = Dict[str, np.ndarray]


@dataclass(frozen=True)
class CaseSet:
    """The cases of one parity check.

    Attributes:
        cases: input cases, in run order.
        reference: where reference outputs come from: {"backend", "source": "run" |
            "golden" | "expected", "path", "description", ...} (recorded in the result).
        reference_outputs: one output dict per case when a file holds them; None when the
            reference backend must run.
        seed: generation seed (None for inputs read from files).
        warnings: things worth knowing (e.g. a golden made from another model file).
        task_data: the real data split (rnndeploy.parity.task_eval.TaskData), if that is the input.
    """

    cases: Tuple[Case, ...]
    reference: Mapping[str, Any]
    reference_outputs: Optional[Tuple[Outputs, ...]] = None
    seed: Optional[int] = None
    warnings: Tuple[str, ...] = ()
    task_data: Any = None

    @property
    def reference_runs(self) -> bool:
        """True when the reference backend runs on the cases (no file holds its outputs)."""
        return self.reference_outputs is None


def collect_cases(source: ModelSource, config: Any, hashes: Mapping[str, Optional[str]]) -> CaseSet:
    """The CaseSet ``config`` (a ParityConfig) asks for.

    Raises:
        UsageError: a file that does not fit the graph (names, dtypes, shapes, values).
    """
    graph = source.graph_spec
    pads = padding_ids(source.spec.attrs)  # pad_sequences' zeros are valid input to a masking Keras model
    if config.golden:
        golden = load_golden(config.golden)
        warnings = check_golden_matches(golden, graph, hashes.get("onnx_sha256"), hashes.get("checkpoint_sha256"))
        for case, outs in zip(golden.cases, golden.outputs):
            who = f"golden {golden.path} case {case.id!r}"
            check_feed(graph, case.inputs, f"{who} inputs")
            check_input_values(graph, case.inputs, f"{who} inputs", padding=pads)
            check_expected(graph, outs, axis_sizes(graph.inputs, case.inputs), f"{who} outputs")
        reference = {"backend": golden.reference_backend, "source": "golden", "path": str(golden.path),
                     "description": golden.manifest.get("reference", {}).get("description", {}),
                     "versions": golden.manifest.get("versions", {}), "created": golden.manifest.get("created")}
        return CaseSet(tuple(golden.cases), reference, tuple(golden.outputs), golden.manifest.get("seed"),
                       tuple(warnings))
    if config.inputs_file:
        feed = load_npz(config.inputs_file, "--inputs")
        check_feed(graph, feed, f"--inputs {config.inputs_file}")
        check_input_values(graph, feed, f"--inputs {config.inputs_file}", padding=pads)
        cases = (Case("inputs", infer_sizes(graph, feed), feed),)
        if not config.expected_file:
            return CaseSet(cases, {"backend": config.reference, "source": "run"})
        expected = load_npz(config.expected_file, "--expected")
        check_expected(graph, expected, cases[0].sizes, f"--expected {config.expected_file}")
        outputs = ({t.name: expected[t.name] for t in graph.outputs},)
        return CaseSet(cases, {"backend": "expected", "source": "expected", "path": config.expected_file}, outputs)
    if config.data_split:
        from rnndeploy.parity.task_eval import load_task_data

        data = load_task_data(source, config.data_split, config.data_rows)
        feed = dict(data.feeds)
        cases = (Case(f"{config.data_split}[:{data.rows}]", infer_sizes(graph, feed), feed),)
        return CaseSet(cases, {"backend": config.reference, "source": "run", "inputs": data.render()},
                       task_data=data)
    pad_id = source.spec.attrs.get("pad_id") if isinstance(source.spec.attrs.get("pad_id"), int) else None
    cases_list: List[Case] = generate_cases(graph, config.shapes, config.seed, config.extra_dims, pad_id,
                                            source.spec.attrs)
    return CaseSet(tuple(cases_list), {"backend": config.reference, "source": "run"}, seed=config.seed)


def sampling_prompt(cases: Tuple[Case, ...], tokens: str, length: int = 8) -> np.ndarray:
    """The prompt char-LM sampling starts from: the first ``length`` tokens of the first case."""
    base = np.asarray(cases[0].inputs[tokens])
    return base[:, : max(1, min(length, base.shape[1]))]


__all__ = ["CaseSet", "Outputs", "collect_cases", "sampling_prompt"]
