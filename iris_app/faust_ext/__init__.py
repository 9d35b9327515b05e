"""Everything in iris_app that reaches into Faust's, mode's or aiokafka's internals, in one place.

Nothing outside this package uses a private name of Faust, mode or aiokafka. The code is
written for the versions in WRITTEN_FOR, and `check_versions()` stops a worker on
any other. What it changes, and why:

The consumer (consumer.py)
- `Consumer._drain_messages` is Faust's loop with its `getmany` inlined. Faust races
  each delivery against "flow suspended" with four new tasks (mode's `wait_first`),
  reads the partition's high-water mark and looks up its callback under a lock, per
  message; here those happen once per partition and fetch, and a fetch's partitions
  are delivered one after the other (Faust interleaves topics record by record).
- `Consumer._fetch_queue_of`, `_deliver_fetch`, `_wait_as_the_conductor` (fetches.py):
  a partition read by one stream of raw bytes (`iris`, the classify agent) is delivered
  a fetch at a time: its new records, as aiokafka fetched them, in a `Fetch` (of up to
  FETCH_RECORDS) put into the stream's queue. It replaces the conductor's per-message
  coroutines (flow control, the producer buffer's wait, decoding: here once per fetch) and
  Faust's Message, Event, queue put and stream step per record. A fetch with a gap is delivered up to it, and
  read again from it (as a jump, below). Records that follow a Fetch still in the queue
  join it (up to FETCH_RECORDS). `FetchQueue` pauses the partition while the queue holds
  FETCHES_QUEUED Fetches (mode's pressure marks count items: Faust's would let thousands
  of fetches in).
- `Consumer.ack_fetch`, `_new_offset`, `_filter_tps_with_pending_acks` (commits.py,
  offsets.py): a Fetch is acknowledged as one range of offsets (`AckedRanges`), not offset
  by offset into Faust's lists, and a commit reaches the end of the run of ranges that
  starts at the committed offset; a Fetch read before a rebalance is not acknowledged.
  `Consumer.in_flight` tells the hand-over of the events and Fetches the agents have taken
  and not acknowledged (Fetches are not in Faust's set of unacknowledged messages).
- `Consumer._assignment_changed`: a delivery that waits out a rebalance (the conductor
  waits while the flow is stopped) is not marked read, and the rest of its fetch is
  dropped. The new assignment has set the read offset from the committed offset;
  marked read, as Faust marks it, the old generation's record would make the new
  assignment drop every record up to it as already read, and the partition would stall.
- `Consumer._positioned`: a partition's records are delivered only once it is seeked in
  this assignment. Faust resumes the flow for table recovery before that seek, and
  records fetched meanwhile (buffered from before the rebalance) go through unchecked,
  out of order: a window's count skips the records they jump.
- `jumped`, `Consumer._read_again_from`: a jump in offsets is read again from its first
  missing record (or the first record left, when retention deleted it). Faust takes it
  for a gap (compaction, transaction markers) and counts the missing records as handled;
  the app's inputs have neither, so a jump means a fetch raced the seek of a rebalance.
  Right after a seek (`Consumer._moved_to`) it is logged at info, else as a warning.
- `Consumer.perform_seek`, `Consumer.seek`, `read_before`: the read offset always means
  the last offset delivered. After a seek Faust records the next offset to read, so a
  fetch that begins one record late looks like no jump, and that record is lost. A
  partition with no committed offset starts at its first record (with "earliest"),
  as if committed there (Faust leaves its read offset unset, and a fetch that begins
  past records dropped before the seek looked like no jump: they were never counted,
  and the next commit passed them), not where its fetch had got to before a rebalance
  dropped what it fetched. Partitions revoked while it seeks are left to the next
  assignment's seek (seeking them would crash the fetcher, and the worker would read
  nothing more).
- `Consumer._new_offset`: a commit never passes the committed offset's own record while
  it is unacknowledged. Faust commits a run of acknowledged offsets that starts one past
  it (faust-streaming #606), and a record still being handled is lost if the worker stops.
- `Consumer.on_partitions_revoked` (commits.py): revoked partitions' acknowledged offsets
  are committed before Faust forgets them (it does, and only then stops the flow), so the next owner
  does not read them again.
- `Consumer._commit_offsets` (commits.py): a commit the broker refuses (a rebalance under
  way) leaves its offsets to commit. Faust counts them committed either way, and the
  acknowledged ranges below them were forgotten: a revoke then had nothing to commit.
- `App.flow_control` (flow.py), `Consumer.rewind`: what Faust's flow control empties out
  of the agents' queues is read again from its first record. Faust empties every stream
  queue each time it resumes the flow, and a worker finishing recovery resumes it more
  than once, the consumer delivering records in between (it seeks to the committed
  offsets, then delivers, then Faust's own seek returns and the flow resumes again): the
  emptied records counted as delivered, the partition read on after them, and a window's
  count, which counts a source partition's records in offset order, skipped them when they
  came again after the next rebalance.
- `Consumer._next_records`: no seek of its own while the flow is stopped. Faust's getmany
  seeks every partition to its committed offset when it finds the flow stopped, and the
  rebalance's recovery seeks them again as it resumes the flow. Each asks the broker for
  the committed offsets; the records delivered after the first seek ended were delivered
  again after the second (a worker taking partitions over classified a second or two of
  their records twice). The recovery's seek is the one a partition's records wait for
  (`_positioned`).
- `Consumer._next_records`: no idling while a stream buffer is full. aiokafka fetches
  nothing from a broker while a paused partition's records sit unread there, so it polls
  again within 50 ms; when every buffer is full Faust sleeps a second, here it waits
  until one drains.
- `FETCH_MAX_WAIT_MS`: a broker may hold an empty fetch 100 ms, not Faust's hard-coded
  1.5 s. Kafka answers as soon as records arrive, but tansu holds the fetch the whole
  time: with 1.5 s, records wait about half a second (p50 at 2,000/s).
- `ConsumerThread.on_start` reads past records aiokafka cannot decode (records.py).

The hand-over (handover.py, membership.py)
- `Consumer.hand_over`, called first by `App.on_stop` (app.py): a stopping worker leaves its
  group before the rest of its stop. Faust leaves last, when the consumer's thread stops (after
  the tables close, the agents stop and the producer flushes), and the other workers wait
  meanwhile. Here the fetcher (`App._fetcher`) stops, the agents finish the records they have
  taken (5 s at most; those left in their queues are dropped), the agents stop, the producer
  flushes, the acknowledged offsets are committed, and the worker leaves; nothing is sent after
  the leave (a table write would race the partitions' next owner). `Consumer.commit` then
  commits nothing (the partitions are another's).
- `Consumer.on_partitions_revoked` (handover.py): before a rebalance, the revoked partitions
  are paused and the agents finish the records they have taken (1 s at most), so that the
  commit of the revoked partitions covers them; Faust drops them (it clears the queues and
  stops the flow, after which an event is not acknowledged) and the next owner classified them
  again. The flow stays on meanwhile (an acknowledgement while it is stopped counts for
  nothing). A commit under way (Faust's timer) is waited for first: Faust skips a commit asked for
  while one is under way (`Consumer.maybe_wait_for_commit_to_finish`), and the revoked
  partitions' was lost. The same wait comes before the stop's commit.
- `membership.leave_at_once`: closes aiokafka's group coordinator (no more heartbeats, no
  rejoin; a dynamic member's LeaveGroup is aiokafka's), then leaves as a static member with
  `LeaveGroup` v3 through aiokafka's client: aiokafka sends no LeaveGroup for a static member
  (as Kafka's Java client), and its partitions would wait out the session timeout. aiokafka
  0.14 defines LeaveGroup v0 and v1 only; v3 (member id and group instance id) is built here.
- `membership.static_membership_supported`: the API versions each broker gave the admin
  client's connection at its handshake (`AIOKafkaAdminClient._client`, `_get_conn`,
  `AIOKafkaConnection._versions`) say whether they take a group instance id (JoinGroup v5,
  LeaveGroup v3); no request of its own. The id itself goes in Faust's own setting
  `consumer_group_instance_id` (application.py `join_as`; not on tansu).

The record reader (records.py)
- `read_past_undecodable` replaces aiokafka.consumer.fetcher's `MemoryRecords` and
  `PartitionRecords`, for every consumer of the process. aiokafka's reader raises on a
  header name that is not UTF-8 (Kafka takes any bytes there), and on a batch it cannot
  read (a wrong CRC, an unknown codec, bytes that do not parse: tansu stores them); the
  error ends the fetch's iterator, the drain loop re-raises it, and every worker that
  takes the partition stops on the same record. Here the rest of that batch is read from
  its bytes: a record whose header names are not UTF-8 comes with `Undecoded` headers,
  and each offset that cannot be read comes as a record with `Undecoded` headers saying
  why (the first with the batch's bytes); the classify agent dead-letters them, and
  reading goes on with the next batch in aiokafka's own reader (C or Python).

The producer (producer.py)
- `Producer.send_batches` sends a batch of records as one record batch per partition, as
  large as a request may be (`producer_max_request_size`), not `producer_max_batch_size`
  (16 KiB): aiokafka sends one batch per partition and request, so a classify batch in
  16 KiB pieces takes several round trips to the broker, one after another. A batch is no
  larger than the topic's max.message.bytes (asked of the brokers once per topic,
  `Producer.max_message_bytes`), and a dead letter is fitted to it (`Letter.fitted`): a
  batch or a letter over it is refused by the broker, and the worker stops.
- `TopicTrackingProducer` keeps every topic it sends to in aiokafka's metadata requests.
  aiokafka's client asks for all topics' metadata first, then only for the topics added
  to it, and `send` adds a topic only when its metadata is missing: a topic known from
  the first fetch drops out at the next update, and its batches wait for a leader in a
  tight loop of metadata requests. `Producer.track` adds the topics the app makes at
  start (after the producer's first fetch), so that Faust's router knows their partitions.

The rest
- `App` (app.py): the Faust app hooks that install this consumer and producer, and the worker,
  and the stop that hands the partitions over first.
- `Worker`, `CommandWorker`, `AppCommand` (worker.py): Ctrl-C stops a worker or a command
  without mode's `-INT- -INT- -INT- -INT- -INT- -INT-` line (`Worker._on_sigint`), by the
  same stop SIGTERM schedules. A command takes `AppCommand` as its base to run in a
  `CommandWorker` (Faust's commands run in mode's Worker, `Command._Worker`).
- `batches.batches`: the classify agent takes its Fetches a batch at a time from its
  channel buffer, instead of Faust's stream iteration (a turn of the event loop and four
  sensor calls per event, more than scoring the record). `batches.acknowledge` leaves the
  events and Fetches read before a rebalance (their offsets would enter the new
  assignment's acknowledged offsets, and a commit before its seek would pass records
  not read yet). A Fetch out of the queue is marked `taken` (its batch filling, or handled): a
  rebalance or a stop waits for it.
- `tables.EventTimeTable`: windows expire by event time. Faust expires them by
  time.time() (`Table._del_old_keys`), so replayed or late data loses windows still
  open in event time; only those it saw set since it started (never those restored),
  and with no tombstone. Here a cleanup scans each active partition's RocksDB store and
  deletes every window past the grace, with a tombstone in the changelog;
  `EventTimeTable.expired` tells an agent a window is gone. Faust sends changelog
  writes in the background and only logs one that fails; here the agent awaits them
  (`EventTimeTable.take_writes`), so a failed write fails the agent.
- `schema.BytesSchema`: raw bytes in and out, without Faust's codec lookups per message.

Everything else (gaps, the bookkeeping of acknowledged offsets, rebalances) is Faust's own.
`check_env_settings()` builds Faust's own settings at start, so that a bad one given by
environment variable stops the worker with one line naming it.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

import faust

WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}


class IncompatibleVersion(RuntimeError):
    """An installed library is not the version these extensions were written against."""


def check_versions(expected: dict[str, str] = WRITTEN_FOR) -> None:
    """Raise IncompatibleVersion unless every package in `expected` is installed at that version."""
    for package, wanted in expected.items():
        try:
            found = version(package)
        except PackageNotFoundError:
            found = "not installed"
        if found != wanted:
            raise IncompatibleVersion(
                f"iris_app.faust_ext was written for {package} {wanted}, found {found}:"
                f" pip install {package}=={wanted} (or check the extensions against {found} first)"
            )


def check_env_settings(app: faust.App) -> None:
    """Build the app's Faust settings now, so that a bad one given by environment (e.g.
    BROKER_SESSION_TIMEOUT) raises ValueError naming it: Faust reads them on first use, with a traceback."""
    try:
        app.conf
    except (TypeError, ValueError) as error:
        for setting in app.Settings.SETTINGS.values():
            name = setting.env_name
            if name and name in os.environ:
                try:  # the settings with this variable alone
                    app.Settings("check", env={name: os.environ[name]})
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{name}={os.environ[name]!r}: {e}") from None
        raise ValueError(f"a Faust setting: {error}") from None
