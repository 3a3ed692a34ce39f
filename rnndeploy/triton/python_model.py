"""The Triton Python-backend model ``rnndeploy serve`` writes into its repository.

Each model directory's ``1/model.py`` is one line importing ``TritonPythonModel`` from here.
Triton runs it in a backend stub process (one per model instance) whose interpreter sees
the serving environment's packages; the model's parameters (config.pbtxt ``parameters``
key ``rnndeploy``, JSON) say which artefacts to load and which Runner to use, so any backend
rnndeploy can run serves the same way. ``triton_python_backend_utils`` exists only inside
that stub, so it is imported in the methods.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List

PARAMETER_KEY = "rnndeploy"


def executor_from_parameters(params: Dict[str, Any]) -> Any:
    """An Executor with an active runner, from the JSON parameters serve.py writes."""
    from rnndeploy.backends import RunnerOptions, create_runner
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.triton.batching import Executor, SequenceStore

    source = resolve_source(onnx=params.get("onnx"), engine=params.get("engine"), checkpoint=params.get("checkpoint"),
                            graph=params.get("graph"), with_state=params.get("with_state"), auto_checkpoint=False)
    options = RunnerOptions(threads=params.get("threads"), device=params.get("device"),
                            precision=params.get("precision", "fp32"))
    runner = create_runner(params["backend"], source, options)
    runner.activate()
    states = tuple(tuple(p) for p in params.get("states", ()))
    store = SequenceStore(idle_s=float(params.get("sequence_idle_s", 10.0)),
                          log=lambda line: print(line, file=sys.stderr, flush=True))
    return Executor(runner, source.graph_spec, states, store)


class TritonPythonModel:
    """Triton's Python-backend interface: initialize / execute / finalize."""

    def initialize(self, args: Dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = json.loads(config["parameters"][PARAMETER_KEY]["string_value"])
        self.input_names = [i["name"] for i in config["input"]]
        self.executor = executor_from_parameters(params)

    def execute(self, requests: List[Any]) -> List[Any]:
        import triton_python_backend_utils as pb_utils

        from rnndeploy.triton.batching import Request

        items = []
        for r in requests:
            inputs = {}
            for name in self.input_names:
                t = pb_utils.get_input_tensor_by_name(r, name)
                if t is not None:
                    inputs[name] = t.as_numpy()
            items.append(Request(inputs, r.correlation_id(), r.flags()))
        responses = []
        for res in self.executor.execute(items):
            if isinstance(res, str):
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(res)))
            else:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(n, a) for n, a in res.items()]))
        return responses

    def finalize(self) -> None:
        self.executor.runner.deactivate()
