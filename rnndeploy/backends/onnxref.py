"""``onnx-ref``: onnx's reference evaluator (``onnx.reference.ReferenceEvaluator``) as a runner.

Slow (pure numpy, one node at a time) but needs nothing beyond onnx, and computes each
op as the ONNX specification defines it: the reference for checking a converted graph
(e.g. an FP16 conversion) on a box without onnxruntime, and a second opinion when
onnxruntime and another runtime disagree. No options apply (the graph runs in its own precision); timing is the host clock.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from rnndeploy.backends.base import ModelSource, RunDescription, Runner, RunnerOptions
from rnndeploy.backends.onnxrt import onnx_file_precision
from rnndeploy.errors import SpecError, first_line


class OnnxReferenceRunner(Runner):
    """The ONNX reference evaluator on the CPU."""

    backend = "onnx-ref"

    def __init__(self, source: ModelSource, options: Optional[RunnerOptions] = None, label: Optional[str] = None):
        super().__init__(source, options, label)
        self.model = source.onnx_model(self.label)
        self.output_names: List[str] = [t.name for t in self.graph_spec.outputs]
        self._evaluator: Any = None
        self._precision = self.options.precision

    def _activate_impl(self) -> None:
        from onnx.reference import ReferenceEvaluator

        from rnndeploy.artefacts.onnx_file import load_onnx
        from rnndeploy.graph.reference import recurrent_ops

        try:
            model = load_onnx(self.model, external_data=True)
            # onnx's own LSTM/GRU/RNN ignore sequence_lens, clip, activations (see rnndeploy.graph.reference)
            self._evaluator = ReferenceEvaluator(model, new_ops=recurrent_ops())
            self._precision = onnx_file_precision(self.model)  # it evaluates the graph as given
        except Exception as exc:  # protobuf / evaluator errors: the file cannot be evaluated
            where = self.model if isinstance(self.model, str) else "the in-memory ONNX model"
            raise SpecError(f"onnx's reference evaluator could not load {where}: {first_line(exc)}") from exc

    def _deactivate_impl(self) -> None:
        self._evaluator = None

    def _infer_impl(self, feed: Dict[str, np.ndarray]) -> Mapping[str, Any]:
        return dict(zip(self.output_names, self._evaluator.run(self.output_names, feed)))

    def describe(self) -> RunDescription:
        import onnx

        return RunDescription(backend=self.label, device="cpu", precision=self._precision, threads=1,
                              details={"onnx": onnx.__version__})
