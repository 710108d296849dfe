"""Serving a saved model: ``ImageClassifier`` (a model folder with its eval preprocessing, PyTorch or ONNX Runtime
backend), Grad-CAM heat maps, the open-set ("none of these") rule, the words the demo says about an answer, the
recent answers a server keeps, and its memory bounded. Used by the demo, evaluation and the benchmarks. Imports
``core``, ``data`` and ``model`` only.
"""
