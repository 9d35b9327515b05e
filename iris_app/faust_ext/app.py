"""The Faust app class that installs the app's consumer, producer and worker."""

from __future__ import annotations

import faust
from faust.transport.drivers import aiokafka
from mode.utils.objects import cached_property

from .flow import FlowControl
from .handover import Consumer
from .producer import Producer
from .worker import Worker


class Transport(aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer


class App(faust.App):
    """A Faust app whose consumer and producer are faust_ext's (Faust picks them by URL scheme), run by
    faust_ext's worker."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, Worker=Worker, **kwargs)

    @cached_property
    def flow_control(self) -> FlowControl:
        """Faust's flow control, whose emptying of the agents' queues rewinds the consumer (flow.py)."""
        return FlowControl(lambda cleared: self.consumer.rewind(cleared), loop=self.loop)

    async def on_stop(self) -> None:
        """Hand the partitions over first (handover.py), then stop as Faust stops."""
        if self._consumer is not None:
            await self._consumer.hand_over()
        await super().on_stop()

    def preflight(self) -> None:
        """What `faust worker` checks before it prints its banner or starts a service (none here)."""

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Transport:
        return Transport(self.conf.broker_producer, self)
