"""Flowers-102 from any source as a ``datasets.DatasetDict``: ``python -m flowers_hf.data SOURCE`` summarises one."""

from .hub import HubUnavailableError
from .load import SYNTHETIC, label_counts, load_flowers, summarize
from .standardize import SPLITS

__all__ = ["SPLITS", "SYNTHETIC", "HubUnavailableError", "label_counts", "load_flowers", "summarize"]
