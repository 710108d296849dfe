"""A server's memory bounded by what it holds, not by the largest photo it has decoded."""

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
LARGE_BUFFER_BYTES = 2**20


def hand_back_large_buffers(threshold: int = LARGE_BUFFER_BYTES) -> bool:
    """Have glibc map every buffer of ``threshold`` bytes or more on its own, so that freeing it returns it.

    Decoded photos are buffers of megabytes. glibc raises its mmap threshold each time such a buffer is freed and
    serves later ones from the heap, which it keeps: a demo's memory then grows towards the largest photos it was
    sent. A fixed threshold turns that off (``bench/fuzz.py --paths demo``, 1,000 fuzzed uploads: RSS +41 MB
    against +69 MB without). Returns whether it was set; a no-op where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        logger.debug("no mallopt in %s: the allocator's own thresholds stay", name)
        return False
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1
