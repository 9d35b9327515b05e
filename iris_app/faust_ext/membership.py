"""The worker's membership of the consumer group: a static instance id, and a leave sent at once on stop.

What each piece changes in Faust or aiokafka, and why: the package's docstring (faust_ext/__init__.py).
"""

from __future__ import annotations

import logging
import socket
import uuid
import zlib
from pathlib import Path

import aiokafka
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import ConnectionGroup
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.group import (
    LeaveGroupRequest_v0,
    LeaveGroupRequest_v1,
    LeaveGroupResponse_v1,
)
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

log = logging.getLogger(__name__)

INSTANCE_ID_FILE = "group-instance-id"  # in the app's folder of the data directory
STATIC_MEMBERSHIP_VERSION = 5  # the first JoinGroup version with a group instance id (Kafka 2.3)


def instance_id(appdir: Path, url: str) -> str:
    """The worker's group instance id: an id made once (host name and a random part) and kept in `appdir`,
    with a checksum of the worker's web address `url`.

    The same data directory and address give the same id, so a worker restarted on them takes its old
    place in the group, without a rebalance. A fresh data directory (a replaced machine) or another
    address joins as a new member: the group's assignment names each member's address (the other
    workers forward requests for its partitions there), and only a rebalance makes a new one."""
    path = appdir / INSTANCE_ID_FILE
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = f"{socket.gethostname()[:40]}-{uuid.uuid4().hex[:12]}"
        appdir.mkdir(parents=True, exist_ok=True)
        path.write_text(kept + "\n")
    return f"{kept}-{zlib.crc32(url.encode()):08x}"


def supports_static_membership(versions: dict[int, tuple[int, int]]) -> bool:
    """Whether a broker of these API versions ({api key: (min, max)}) takes a group instance id:
    JoinGroup (11) v5 and LeaveGroup (13) v3 or later."""
    join, leave = versions.get(11, (0, -1)), versions.get(13, (0, -1))
    return join[1] >= STATIC_MEMBERSHIP_VERSION and leave[1] >= 3


async def static_membership_supported(admin: AIOKafkaAdminClient) -> bool:
    """Whether every broker of the cluster `admin` (started) is connected to takes a group instance id, by
    the API versions its connection to each learnt at its handshake (aiokafka asks every broker it connects
    to, and picks request versions by them); a broker out of reach: no."""
    client = admin._client
    for broker in client.cluster.brokers():
        conn = await client._get_conn(broker.nodeId)
        if conn is None or not supports_static_membership(conn._versions):
            return False
    return True


class LeaveGroupResponse_v3(Response):
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(
                ("member_id", String("utf-8")), ("group_instance_id", String("utf-8")), ("error_code", Int16)
            ),
        ),
    )


class LeaveGroupRequest_v3(RequestStruct):
    """Kafka's LeaveGroup v3 (KIP-345): members leave by member id and group instance id."""

    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = LeaveGroupResponse_v3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class LeaveGroup(Request[LeaveGroupRequest_v0 | LeaveGroupRequest_v1 | LeaveGroupRequest_v3]):
    """A member leaving its group, in the highest version the broker and this module share (0, 1 or 3)."""

    API_KEY = 13

    def __init__(self, group: str, member_id: str, group_instance_id: str | None) -> None:
        self.group, self.member_id, self.group_instance_id = group, member_id, group_instance_id

    def build(self, request_struct_class: type) -> RequestStruct:
        if request_struct_class.API_VERSION < 3:
            return request_struct_class(self.group, self.member_id)
        return request_struct_class(self.group, [(self.member_id, self.group_instance_id)])


def leave_error(response: LeaveGroupResponse_v1 | LeaveGroupResponse_v3) -> str | None:
    """The error a LeaveGroup response names, for the group or its member; None if it has none."""
    codes = [response.error_code, *(member[2] for member in getattr(response, "members", []))]
    errors = [for_code(code).__name__ for code in codes if code]
    return ", ".join(errors) or None


async def leave_at_once(consumer: aiokafka.AIOKafkaConsumer) -> None:
    """Close the consumer's group membership, and leave the group: its partitions go to the other members
    at once, not after the session timeout. In the consumer's own event loop.

    aiokafka closes the coordinator (no more heartbeats, no rejoin) and leaves only as a dynamic member;
    a static member (a group instance id) leaves here, with LeaveGroup v3."""
    coordinator = consumer._coordinator
    if coordinator is None:
        return
    generation, member_id = coordinator.generation, coordinator.member_id
    instance, node = coordinator._group_instance_id, coordinator.coordinator_id
    await coordinator.close()  # a dynamic member leaves here (aiokafka logs "LeaveGroup request succeeded")
    if instance is None or generation <= 0 or node is None:
        return
    try:
        response = await consumer._client.send(
            node, LeaveGroup(coordinator.group_id, member_id, instance), group=ConnectionGroup.COORDINATION
        )
    except KafkaError as e:
        log.warning("Could not leave group %s as %s: %r", coordinator.group_id, instance, e)
        return
    error = leave_error(response)
    if error:
        log.warning("Leaving group %s as %s: %s", coordinator.group_id, instance, error)
    else:
        log.info("Left group %s as %s (member %s)", coordinator.group_id, instance, member_id)
