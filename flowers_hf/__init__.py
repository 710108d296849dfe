"""flowers_hf: fine-grained image classification (Oxford Flowers-102 first) with timm models in the Hugging Face stack.

The folders are layers, bottom to top; each imports only from those below it (``tests/test_layers.py``): ``core``,
``data``, ``model``, ``serving``, ``evaluation``, ``training``, ``reporting``, ``export``, then the entry points
``evaluate.py`` and ``push.py`` (``train.py`` and ``demo/app.py`` sit outside the package).
"""

import os

# Albumentations asks PyPI for a newer version on import; never touch the network implicitly.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
