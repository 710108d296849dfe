"""Serving a saved model: ``ImageClassifier`` (a model folder with its eval preprocessing, PyTorch or ONNX Runtime
backend), Grad-CAM heat maps, and the open-set ("none of these") rule. Used by the demo, evaluation and the
benchmarks. Imports ``core``, ``data`` and ``model`` only.
"""
