"""Training: the Trainer and its arguments, the loss, stages, layer groups (freezing and unfreezing), the frozen
backbone's features, the teacher of distillation, EMA, checkpoints, Ctrl-C. Imports ``core``, ``data``, ``model``,
``serving`` (the teacher is a saved model) and ``evaluation`` (metrics, scoring the teacher).
"""
