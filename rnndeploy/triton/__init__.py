"""Triton Inference Server: model repositories, a local server, and a load test that checks every answer.

    rnndeploy triton MODEL -o REPO/     config.pbtxt + model file for Triton's onnxruntime / tensorrt backends
                                        (repository.py, config.py, modelio.py, streaming.py)
    rnndeploy serve MODEL...            a real tritonserver on this box through PyTriton, running the
                                        model through rnndeploy's Runner interface (serve.py, python_model.py,
                                        batching.py)
    rnndeploy loadtest URL --model N    a concurrency sweep over HTTP or gRPC; every response is compared with
                                        the local reference (loadtest.py, results.py)

Both clients and repositories follow one convention: every tensor Triton sees is batch-first
(its "batch" axis at position 0, excluded from ``dims`` when ``max_batch_size > 0``), and a
streaming model (one whose spec has optional state inputs that start at zeros) keeps its
state on the server per sequence id: clients send only the new tokens with tritonclient's
``sequence_id`` / ``sequence_start`` / ``sequence_end``.

Nothing here imports tritonclient or PyTriton at import time: each entry point imports what
it needs and raises MissingDependencyError naming the extra (``triton`` for tritonclient,
``serve`` for nvidia-pytriton, which needs numpy < 2).
"""
