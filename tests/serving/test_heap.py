"""What a loaded model leaves behind is kept out of the garbage collector's way."""

from __future__ import annotations

import gc
import weakref

from modelyard.serving.heap import settle


class Node:
    def __init__(self) -> None:
        self.me = self


def test_settle_freezes_what_is_alive_and_new_garbage_is_still_collected() -> None:
    gc.unfreeze()
    kept = [[index] for index in range(1000)]
    try:
        settle()
        # What was alive is out of the collector's reach: full collections skip it.
        assert gc.get_freeze_count() >= len(kept)
        tracked = {id(obj) for obj in gc.get_objects()}
        assert not any(id(item) in tracked for item in kept)
        # A reference cycle made afterwards is still found and freed.
        cycle = Node()
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
