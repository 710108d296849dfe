"""Evaluation: metrics, calibration, the corruption suite, open-set scores and the engine behind
``python -m flowers_hf.evaluate``. Imports ``core``, ``data``, ``model`` and ``serving``.
"""
