"""drop_group: a persistent DURABLE group whose consumer was removed stops holding the writer back; a group with
members is not dropped ('busy'); an unknown ring or group is 'absent'."""

from __future__ import annotations

import pytest

import edgeflow as ef
from edgeflow.errors import BackpressureTimeout
from edgeflow.transport import shm


def test_a_dropped_durable_group_no_longer_holds_the_writer(app):
    shm.declare_group("cam", "gone", ef.QoS.DURABLE, app=app)
    with ef.Publisher("cam", app=app, slots=8, backpressure_timeout=0.05) as pub:
        with pytest.raises(BackpressureTimeout):
            for i in range(20):                   # nobody takes the group's frames: the ring fills
                pub.publish(b"x%d" % i)
        assert shm.drop_group("cam", "gone", app=app) == "dropped"
        for i in range(40):                       # the writer goes round the ring freely now
            pub.publish(b"y%d" % i)
        assert shm.drop_group("cam", "gone", app=app) == "absent"
    shm.remove_topic("cam", app=app)


def test_a_group_with_members_is_busy_and_unknown_ones_absent(app):
    with ef.Publisher("cam", app=app) as pub, \
            ef.Subscriber("cam", app=app, qos=ef.QoS.DURABLE, group="live") as sub:
        pub.publish(b"a")
        assert sub.recv(timeout=2).data == b"a"
        assert shm.drop_group("cam", "live", app=app) == "busy"
        assert shm.drop_group("cam", "nope", app=app) == "absent"
    assert shm.drop_group("no-such-topic", "live", app=app) == "absent"
