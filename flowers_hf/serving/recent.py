"""What a server keeps of its last answers, by key, for the requests that follow one (the demo's view and heat map
read the input its prediction prepared): the newest ``size``, safe to share between threads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")


class Recent(Generic[T]):
    """The ``size`` newest values put, by key; putting a key again makes it the newest.

    Args:
        size: how many to keep.
    """

    def __init__(self, size: int) -> None:
        self._values: OrderedDict[str, T] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def put(self, key: str, value: T) -> T:
        """Keep ``value`` under ``key``, dropping the oldest beyond ``size``; returns ``value``."""
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self._size:
                self._values.popitem(last=False)
        return value

    def get(self, key: str) -> T | None:
        """The value under ``key``, or ``None`` where it was never put or has been dropped."""
        with self._lock:
            return self._values.get(key)
