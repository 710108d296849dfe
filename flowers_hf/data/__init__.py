"""Flowers-102 from any source as a ``datasets.DatasetDict``: ``python -m flowers_hf.data SOURCE`` summarises one."""

from flowers_hf.data.load import SYNTHETIC, label_counts, load_flowers, summarize
from flowers_hf.data.standardize import SPLITS

__all__ = ["SPLITS", "SYNTHETIC", "label_counts", "load_flowers", "summarize"]
