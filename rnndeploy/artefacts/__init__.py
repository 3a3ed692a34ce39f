"""Artefacts on disk: what a path names, where each kind lives, and the one loader per kind.

Every file rnndeploy reads back goes through exactly one function, so a file is checked
(and a bad one refused with one clear line) in one place. Input validation of a kind
belongs in its loader.

    kind                      loader                                          module
    ONNX file                 load_onnx, load_metadata (spec, graph, export)  artefacts/onnx_file.py
    checkpoint (deploy side)  checkpoint_spec, manifest_sha256 (no torch)     artefacts/checkpoint.py
    checkpoint (torch side)   load_model (hashes verified, safetensors)       rnndeploy/checkpoint.py
    user module FILE.py:FN    load_user_module (its folder on sys.path)       artefacts/user_module.py
    engine sidecar            read_sidecar (schema, size, sha256, TRT/GPU)    rnndeploy/engine/sidecar.py
    Keras model (.keras/.h5)  load_keras_file (no TensorFlow, no pickles)     rnndeploy/keras/archive.py
    inputs / expected .npz    load_npz (never unpickles), save_npz            rnndeploy/fileio.py
    golden directory          load_golden / save_golden                       rnndeploy/parity/golden.py
    recipe (.toml)            load_recipe                                     rnndeploy/recipe.py
    results JSON              read_document + load_results, write_results     rnndeploy/report/schema.py
    MODEL argument            classify ("onnx", "checkpoint", "engine", ...)  artefacts/naming.py
    multi-graph exports       graph_paths, seq2seq_paths, sibling_graph       artefacts/naming.py

The engine sidecar lives beside the TensorRT builder that writes it; the golden
directory beside parity, its only reader. Torch-free: importing this package imports
neither torch nor any runtime.
"""
