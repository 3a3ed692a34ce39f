"""rnndeploy: recurrent networks from PyTorch to ONNX Runtime and TensorRT, with proof.

Importing this package needs only numpy, onnx and click. torch is imported by the
training and export modules alone; TensorRT and onnxruntime load lazily in the
runners that use them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
