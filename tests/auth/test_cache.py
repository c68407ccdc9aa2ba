"""Access answers remembered briefly: renewed by one caller, never used past their time (on a
clock the tests set)."""

from __future__ import annotations

from modelyard.auth.cache import AnswerCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_kept_for_its_time_and_no_longer() -> None:
    clock = Clock()
    cache: AnswerCache[str, str] = AnswerCache(ttl_s=4.0, clock=clock)
    assert cache.get("k") is None
    cache.put("k", "alice")
    clock.now += 1.9
    assert cache.get("k") == "alice"
    assert cache.fresh("k") == "alice"
    clock.now += 2.1
    assert cache.get("k") is None
    assert cache.fresh("k") is None


def test_past_half_its_time_one_caller_renews_while_the_others_keep_the_answer() -> None:
    clock = Clock()
    cache: AnswerCache[str, str] = AnswerCache(ttl_s=4.0, clock=clock)
    cache.put("k", "alice")
    clock.now += 2.5
    assert cache.get("k") is None  # this caller looks it up again
    assert [cache.get("k") for _ in range(3)] == ["alice"] * 3  # the others do not
    assert cache.fresh("k") is None  # a lookup on the renewing caller's behalf is not skipped
    cache.put("k", "alice (renewed)")
    clock.now += 1.7  # past the first answer's end, not yet half through the renewed one
    assert cache.get("k") == "alice (renewed)"


def test_an_answer_being_renewed_still_ends_on_time() -> None:
    clock = Clock()
    cache: AnswerCache[str, str] = AnswerCache(ttl_s=4.0, clock=clock)
    cache.put("k", "alice")
    clock.now += 3.0
    assert cache.get("k") is None  # renewal claimed, never completed
    assert cache.get("k") == "alice"
    clock.now += 1.0
    assert cache.get("k") is None
    assert cache.get("k") is None


def test_dropped_answers_are_looked_up_again() -> None:
    cache: AnswerCache[tuple[str, str], bool] = AnswerCache(ttl_s=4.0, clock=Clock())
    for key in [("key1", "a"), ("key1", "b"), ("key2", "a")]:
        cache.put(key, True)
    cache.drop_where(lambda key, _answer: key[1] == "a")
    assert cache.get(("key1", "a")) is None and cache.get(("key2", "a")) is None
    assert cache.get(("key1", "b")) is True
    cache.drop(("key1", "b"))
    assert cache.get(("key1", "b")) is None


def test_no_time_to_live_remembers_nothing() -> None:
    cache: AnswerCache[str, str] = AnswerCache(ttl_s=0.0, clock=Clock())
    cache.put("k", "alice")
    assert cache.get("k") is None


def test_a_full_cache_starts_over_rather_than_growing() -> None:
    cache: AnswerCache[int, int] = AnswerCache(ttl_s=4.0, max_entries=3, clock=Clock())
    for key in range(3):
        cache.put(key, key)
    cache.put(3, 3)
    assert [cache.get(key) for key in range(4)] == [None, None, None, 3]
