"""Keras models (``.keras`` / ``.h5``) → ONNX with native recurrent nodes, torch-free.

    from rnndeploy.keras import load_keras_file, convert_keras
    conversion = convert_keras(load_keras_file("model.keras"))

Reading and converting need numpy, onnx and h5py only; validating against Keras
itself (``rnndeploy.keras.validate``) needs Keras on its torch backend.
"""

from __future__ import annotations

from rnndeploy.keras.archive import KerasFile, is_keras_path, load_keras_file
from rnndeploy.keras.convert import Conversion, ConvertOptions, convert_keras

__all__ = ["Conversion", "ConvertOptions", "KerasFile", "convert_keras", "is_keras_path", "load_keras_file"]
