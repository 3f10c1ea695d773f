"""Faust's aiokafka consumer, run on the app's own event loop instead of a thread of its own.

faust-streaming 0.15 always runs the worker's aiokafka consumer in
``AIOKafkaConsumerThread``, a ``mode`` ``QueueServiceThread`` with a second event loop:
every fetch, commit and seek crosses threads through mode's method queue
(``call_soon_threadsafe`` there and back, each side waking its own loop), and the
rebalance callbacks cross back the same way. At 10 events/s that thread alone cost
1.3-1.5 ms of CPU per event on the 2-core host, against 0.77 ms for a whole process
that runs a bare aiokafka consumer on its loop (docs/benchmarks, F5). Most of the
thread's cost is aiokafka's own work, which moves onto the loop. On the quiet host
(docs/benchmarks, "The consumer on the loop against Faust's thread, alone") the worker
spent the same at 10 ev/s, about 1 ms less per event at 50 and 100 ev/s, and idled
at 0.006 cores against 0.007-0.008.

``LoopConsumerTransport`` keeps Faust's consumer as it is (``driver.Consumer``: the
fetcher, acks, commit bookkeeping, the rebalance listener, seeks and highwaters) and
swaps only the "thread" under it for ``ConsumerOnLoop``: Faust's own
``AIOKafkaConsumerThread`` code (with the worker's fetch settings, ``faust_fetch``)
whose service starts on the app's loop, whose delegated calls are awaited directly,
and whose rebalance callbacks await the consumer's directly instead of handing them to
the consumer's method queue.

What it changes for liveness: aiokafka's heartbeat task now shares the worker's loop,
so anything that holds the loop longer than the session timeout costs the worker its
partitions (with the thread, only the GIL could starve it). The worker's long work
runs in threads (bundle loads, catalog pages, index updates, batch scoring); what the
loop itself runs is a micro-batch's decode, Redis calls and, at light load, one small
batch's scoring (a few ms): see docs/configuration.md, ``FRESHET_KAFKA_CONSUMER_ON_LOOP``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from mode import Service
from mode.utils.futures import maybe_async

from streams.runtime.faust_fetch import FetchTunedConsumerThread, StallCheckedConsumer


class ConsumerOnLoop(FetchTunedConsumerThread):
    """Faust's aiokafka consumer "thread", as a plain service on the app's event loop.

    ``mode.threads.ServiceThread`` is undone method by method: no thread is started
    (``start`` is ``Service.start``), ``thread_loop`` is the app's loop, stopping runs
    in ``stop`` as any service's does (``on_stop`` does what the thread did on its way
    out: it stops the aiokafka consumer), and ``call_thread`` awaits the call. The rest,
    consumer construction, commit, fetch, seek, highwaters and the event path checks,
    is Faust's own code.
    """

    wait_for_shutdown = False  # nothing else sets the shutdown flag: no thread to join

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        loop = kwargs.pop("loop", None) or consumer.loop
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)

    async def start(self) -> None:
        await Service.start(self)

    async def maybe_start(self) -> bool:
        return await Service.maybe_start(self)

    async def stop(self) -> None:
        await Service.stop(self)

    async def crash(self, exc: BaseException) -> None:
        await Service.crash(self, exc)

    def _stopped_set(self) -> None:
        Service._stopped_set(self)

    def set_shutdown(self) -> None:
        Service.set_shutdown(self)

    async def _stop_children(self) -> None:
        await Service._stop_children(self)

    async def _stop_futures(self) -> None:
        await Service._stop_futures(self)

    async def _stop_exit_stacks(self) -> None:
        await Service._stop_exit_stacks(self)

    async def on_stop(self) -> None:
        await self.on_thread_stop()  # stops the aiokafka consumer (no method queue started)

    @Service.task
    async def _thread_keepalive(self) -> None:
        """No second loop to keep awake (the thread's timer woke it every second)."""

    async def call_thread(
        self, fun: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        return await maybe_async(fun(*args, **kwargs))

    async def cast_thread(
        self, fun: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> None:
        # mode's cast is fire-and-forget on the thread; here it finishes before returning
        # (faust's aiokafka driver never casts, so nothing waits on this that did not).
        await maybe_async(fun(*args, **kwargs))

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await self.consumer.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        await self.consumer.on_partitions_assigned(assigned, generation_id)


class _LoopConsumer(StallCheckedConsumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ConsumerOnLoop(self, loop=self.loop, beacon=self.beacon)


class LoopConsumerTransport(driver.Transport):
    """Faust's aiokafka transport, its consumer on the app's loop with ``app.fetch``."""

    Consumer = _LoopConsumer
