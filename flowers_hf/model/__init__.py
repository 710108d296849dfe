"""The model: a timm architecture wrapped as ``TimmWrapperForImageClassification`` (from a timm name, a run folder
or a Hub repo), saved as a folder both transformers and timm load, and the model's command-line arguments.
Imports ``core`` and ``data`` only.
"""
