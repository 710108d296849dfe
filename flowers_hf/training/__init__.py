"""Training: the Trainer and its arguments, the loss, stages, layer groups (freezing and unfreezing), the frozen
backbone's features, EMA, checkpoints, Ctrl-C. Imports ``core``, ``data``, ``model`` and ``evaluation`` (its
metrics).
"""
