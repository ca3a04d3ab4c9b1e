"""Intrusive doubly linked lists of calls: what the registry keeps calls in order with."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sipxcc.calls.call import Call


class Chain:
    """
    Calls in the order they were appended, linked through two slots of the calls
    themselves (named by C{prev} and C{next}): append, remove and oldest in O(1), and no
    container entry per call. A call is in at most one chain of each kind.
    """

    __slots__ = ("prev", "next", "oldest", "newest", "size")

    def __init__(self, prev: str, next: str):
        self.prev, self.next = prev, next
        self.oldest: Call | None = None
        self.newest: Call | None = None
        self.size = 0

    def append(self, call: Call) -> None:
        newest = self.newest
        setattr(call, self.prev, newest)
        setattr(call, self.next, None)
        if newest is None:
            self.oldest = call
        else:
            setattr(newest, self.next, call)
        self.newest = call
        self.size += 1

    def remove(self, call: Call) -> None:
        prev, next = getattr(call, self.prev), getattr(call, self.next)
        if prev is None:
            self.oldest = next
        else:
            setattr(prev, self.next, next)
        if next is None:
            self.newest = prev
        else:
            setattr(next, self.prev, prev)
        setattr(call, self.prev, None)
        setattr(call, self.next, None)
        self.size -= 1

    def newest_first(self) -> Iterator[Call]:
        call, prev = self.newest, self.prev
        while call is not None:
            preceding = getattr(call, prev)
            yield call
            call = preceding
