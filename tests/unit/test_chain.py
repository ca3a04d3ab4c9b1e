"""The registry's intrusive lists: order kept through removals at either end and between."""

from sipxcc.calls.call import Call, CallRequest
from sipxcc.calls.chain import Chain
from sipxcc.users import User

USER1 = User("user1@sipx.test", "user1", (), None, None, None)


def test_append_and_remove_anywhere_keep_the_order_and_the_size():
    calls = [Call(CallRequest(USER1, "user1@sipx.test", f"t{n}@sipx.test"), n)
             for n in range(5)]
    chain = Chain("done_prev", "done_next")
    for call in calls:
        chain.append(call)
    assert list(chain.newest_first()) == calls[::-1] and chain.size == 5
    chain.remove(calls[2])
    chain.remove(calls[0])
    chain.remove(calls[4])
    assert list(chain.newest_first()) == [calls[3], calls[1]]
    assert (chain.oldest, chain.newest, chain.size) == (calls[1], calls[3], 2)
    assert calls[2].done_prev is calls[2].done_next is None  # no link left to keep it alive
    chain.remove(calls[1])
    chain.remove(calls[3])
    assert (chain.oldest, chain.newest, chain.size) == (None, None, 0)
    chain.append(calls[2])
    assert list(chain.newest_first()) == [calls[2]]
