"""The ``keras`` runner: a saved Keras model run by Keras itself (torch backend), so Keras
sits in the same parity and bench tables as ONNX Runtime and TensorRT.

    rnndeploy parity model.onnx --keras model.keras --backend keras --backend ort-cpu --reference keras

The contract (input/output names, streamed state tensors) comes from the ONNX file the
model was exported to (``rnndeploy export model.keras``), or from converting the Keras
file when no ONNX file is given. Streamed states are handed to Keras' recurrent layers
as their state variables for each call (``rnndeploy.keras.reference``). FP32 only.

Timing: host clock around the synchronous ``model(x)`` call (eager Keras on torch,
Python loop over time steps), on CPU unless Keras' torch backend picked a GPU.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import numpy as np

from rnndeploy.backends.base import RunDescription, Runner


class KerasRunner(Runner):
    backend = "keras"
    precisions = ("fp32",)

    def _activate_impl(self) -> None:
        from rnndeploy.keras.reference import KerasModel

        path = self.source.need("keras", self.backend)
        graph = self.graph_spec
        attrs = self.source.spec.attrs
        states = [(s["layer"], s["direction"], s["kind"], s["input"], s["output"]) for s in attrs.get("keras_states", [])]
        streamed_in = {t.name for t in graph.inputs if t.optional}
        inputs = [t.name for t in graph.inputs if t.name not in streamed_in]
        outputs = [t.name for t in self.source.spec.graph(self.source.graph).outputs if not t.optional]
        self.model = KerasModel(path, inputs, outputs, states, attrs.get("keras_output_keys"))
        self.keras_version = f"{self.model.keras.__version__} ({self.model.keras.backend.backend()} backend)"

    def _infer_impl(self, feed: Dict[str, np.ndarray]) -> Mapping[str, Any]:
        # Without the streaming form every call starts from zero states (Keras would otherwise
        # carry a stateful layer's state from one call into the next).
        return self.model.run(feed, threads=self.options.threads)

    def _deactivate_impl(self) -> None:
        self.model = None

    def describe(self) -> RunDescription:
        device = "cpu"
        try:
            from keras.src.backend.torch.core import get_device

            device = str(get_device())
        except Exception:  # other backends or Keras versions: say cpu, the default on a CPU box
            pass
        return RunDescription(backend=self.backend, device=device, precision="fp32", threads=self.options.threads,
                              details={"keras": getattr(self, "keras_version", "")})
