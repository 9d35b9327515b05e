"""A worker's group instance id comes from its data directory and web address; Kafka's LeaveGroup v3."""

from __future__ import annotations

from aiokafka.protocol.group import LeaveGroupRequest_v1

from iris_app.faust_ext.membership import (
    LeaveGroup,
    LeaveGroupRequest_v3,
    instance_id,
    supports_static_membership,
)


def test_the_same_data_directory_and_address_give_the_same_id(tmp_path):
    assert instance_id(tmp_path / "v1", "http://a:6066") == instance_id(tmp_path / "v1", "http://a:6066")


def test_another_data_directory_gives_another_id(tmp_path):
    assert instance_id(tmp_path / "a", "http://a:6066") != instance_id(tmp_path / "b", "http://a:6066")


def test_another_address_gives_another_id(tmp_path):
    assert instance_id(tmp_path, "http://a:6066") != instance_id(tmp_path, "http://a:6067")


def test_static_membership_needs_joingroup_v5_and_leavegroup_v3():
    assert supports_static_membership({11: (0, 9), 13: (0, 5)})
    assert not supports_static_membership({11: (0, 4), 13: (0, 5)})
    assert not supports_static_membership({11: (0, 9), 13: (0, 2)})


def test_a_leave_names_the_member_and_its_instance_where_the_broker_reads_both():
    leave = LeaveGroup("iris_app", "w-1-abc", "w-1")
    # group "iris_app", one member: "w-1-abc", "w-1" (strings with an int16 length; an int32 array length)
    assert leave.prepare({13: (0, 5)}).encode() == (
        b"\x00\x08iris_app" + b"\x00\x00\x00\x01" + b"\x00\x07w-1-abc" + b"\x00\x03w-1"
    )
    assert isinstance(leave.prepare({13: (0, 5)}), LeaveGroupRequest_v3)
    assert isinstance(leave.prepare({13: (0, 2)}), LeaveGroupRequest_v1)
