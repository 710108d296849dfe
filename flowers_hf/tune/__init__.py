"""Tuning: a learning-rate range test and an Optuna hyperparameter search whose trials are ``train.py`` runs.

The top layer: it imports ``flowers_hf.train`` (every trial is its ``train``, the best configuration its ``main``)
and, through it, every layer below.

python -m flowers_hf.tune lr_find --config configs/quickstart.yaml
python -m flowers_hf.tune search --config configs/quickstart.yaml --n_trials 12 --output_dir runs/search
"""
