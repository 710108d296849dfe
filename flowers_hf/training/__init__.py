"""Training: the Trainer and its arguments, the loss, stages, freezing, EMA, checkpoints, Ctrl-C."""
