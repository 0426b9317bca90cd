"""A service's start-up objects leave the garbage collector's full collections."""

import gc

from fleetmail_runtime.process import freeze_startup_objects


def test_start_up_objects_are_frozen_and_garbage_is_not() -> None:
    class Cycle:
        pass

    garbage = Cycle()
    garbage.me = garbage  # type: ignore[attr-defined]
    del garbage
    before = gc.get_freeze_count()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > before
        assert not [o for o in gc.get_objects() if type(o).__name__ == "Cycle"]
    finally:
        gc.unfreeze()
