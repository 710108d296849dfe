"""Phone photos in local folders: HEIC/HEIF and AVIF files count as images for ``datasets``' folder loaders."""

from __future__ import annotations

from datasets import packaged_modules
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

from flowers_hf.data.images import PHONE_EXTENSIONS


def allow_phone_formats() -> None:
    """Let ``load_dataset("imagefolder", …)`` and ``load_dataset(FOLDER)`` take ``.heic``, ``.heif``, ``.avif``, …
    files (either case), which ``flowers_hf.data.images`` taught Pillow to open. Safe to call again.

    datasets 5.2 has no way to add an extension: its lists were written once from Pillow's own plugins, so files
    in these formats are left out without a word (``imagefolder``) or a folder of them is "no data files". The lists
    are extended in place, as ``datasets.load`` imported them by reference.
    """
    for extension in (*PHONE_EXTENSIONS, *(ext.upper() for ext in PHONE_EXTENSIONS)):
        if extension.islower() and extension not in ImageFolder.EXTENSIONS:
            ImageFolder.EXTENSIONS.append(extension)
        if extension not in packaged_modules._EXTENSION_TO_MODULE:
            packaged_modules._EXTENSION_TO_MODULE[extension] = ("imagefolder", {})
            packaged_modules._MODULE_TO_EXTENSIONS["imagefolder"].append(extension)
            packaged_modules._ALL_ALLOWED_EXTENSIONS.append(extension)
