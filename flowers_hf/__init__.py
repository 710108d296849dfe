"""flowers_hf: fine-grained Oxford Flowers-102 classification with timm models in the Hugging Face stack."""

import os

# Albumentations asks PyPI for a newer version on import; never touch the network implicitly.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
