"""Evaluation: metrics, calibration, the corruption suite and the engine behind ``python -m flowers_hf.evaluate``."""
