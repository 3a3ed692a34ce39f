"""Artefacts on disk: where each kind lives (naming) and the one loader per kind.

Every file rnndeploy reads back goes through one function here, so a file is checked
(and a bad one rejected with one clear line) in one place:

    naming.py     graph_paths / sibling_graph — the NAME.<graph>.onnx convention of
                  multi-graph exports (a seq2seq model: NAME.encoder.onnx + NAME.decoder_step.onnx)

Torch-free: importing this package imports neither torch nor any runtime.
"""
