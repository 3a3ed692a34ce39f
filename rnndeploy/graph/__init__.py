"""ONNX graph rewrites that make recurrent models run, and run right, on every runtime.

- ``normalize``: layout=1 recurrent nodes → layout=0 with Transposes, batch-first state
  tensors (``make_state_batch_first``), constant folding of shape subgraphs, runtime
  workarounds — each rewrite reported in one line and checked before it is kept
  (``verify``).
- ``compat``: what still trips which runtime (ONNX Runtime CPU/CUDA, TensorRT 8.6/10,
  OpenVINO), node by node.
- ``reference``: onnx's reference evaluator with spec-complete LSTM/GRU/RNN operators.

Torch-free; runs on Python 3.9 with numpy 1.26 and onnx 1.19.
"""
