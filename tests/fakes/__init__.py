"""Stand-ins for third-party modules and devices (TensorRT, libcudart).

They test rnndeploy's branching and plumbing only. A test that uses one never counts as an
engine build or a GPU run; those are the ``gpu``-marked tests (tests/test_gpu_trt.py).
"""
