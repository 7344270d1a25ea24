"""The local warm pool's decisions (localpool.py), by plain equality."""
import pytest

from myservice_gateway.backends import localpool
from myservice_gateway.backends.localpool import Source


@pytest.mark.parametrize("ready,starting,processes,max_instances,expected", [
    (1, 0, 1, 4, Source.READY_MEMBER),             # a ready member is always taken first
    (1, 0, 4, 4, Source.READY_MEMBER),             # ... even when every slot is taken: the pool is spare capacity
    (0, 1, 4, 4, Source.STARTING_MEMBER),    # a full table takes a member still starting
    (0, 1, 1, 4, Source.STARTING_MEMBER),    # ... and so does one with room: it is part way through the same start
    (0, 0, 3, 4, Source.NEW_PROCESS),
    (0, 0, 0, 1, Source.NEW_PROCESS),
    (0, 0, 4, 4, Source.BUSY),             # every process is a session's
    (0, 0, 0, 0, Source.BUSY),
])
def test_source_for_new_session(ready, starting, processes, max_instances, expected):
    assert localpool.source_for_new_session(ready=ready, starting=starting, processes=processes,
                                            max_instances=max_instances) is expected


@pytest.mark.parametrize("pool_size,members,starting,processes,max_instances,expected", [
    (4, 0, 0, 0, 16, 2),    # an empty pool fills `at_once` (2 here) at a time
    (4, 2, 2, 2, 16, 0),    # two starting already: wait for them
    (4, 3, 1, 3, 16, 1),    # one missing, one start free
    (4, 4, 0, 4, 16, 0),    # full
    (4, 0, 0, 15, 16, 1),   # room for one process only
    (4, 1, 0, 16, 16, 0),   # no room: the sessions have it
    (0, 0, 0, 0, 16, 0),    # pool off
    (20, 0, 0, 16, 16, 0),  # larger than the bound: the bound wins
])
def test_pool_starts_due(pool_size, members, starting, processes, max_instances, expected):
    assert localpool.pool_starts_due(pool_size=pool_size, members=members, starting=starting, processes=processes,
                                     max_instances=max_instances, at_once=2) == expected


@pytest.mark.parametrize("cores,expected", [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_half_the_cores_start_pool_members(cores, expected):
    assert localpool.starts_at_once(cores) == expected


def test_retry_delay_doubles_up_to_its_cap():
    assert [localpool.retry_delay(n) for n in range(0, 4)] == [0.0, 0.5, 1.0, 2.0]
    assert localpool.retry_delay(50) == localpool.RETRY_MAX_SECONDS
