"""Data: any image-classification source as a ``datasets.DatasetDict`` (train, validation, test) with its own
class names, its identity, image checks, the train and eval transforms and the decoded-once cache; the data's
command-line arguments. ``python -m flowers_hf.data SOURCE`` summarises a source. Imports ``core`` only.
"""

from flowers_hf.data.load import SYNTHETIC, label_counts, load_data, summarize
from flowers_hf.data.standardize import SPLITS

__all__ = ["SPLITS", "SYNTHETIC", "label_counts", "load_data", "summarize"]
