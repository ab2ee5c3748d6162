"""Small requests that arrive together share one forward pass.

On a CPU one batch of 16 images costs far less than 16 batches of one, so the first request waits a few
milliseconds for company, then everything queued (up to ``max_batch``) runs as one batch in a worker thread while
the event loop keeps accepting requests. Batches run one at a time, always on the same thread, so the model is never
called concurrently and the allocator and the math libraries keep one set of per-thread buffers, not one per thread
of a pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class MicroBatcher(Generic[Item, Result]):
    def __init__(self, run_batch: Callable[[list[Item]], list[Result]], max_batch: int, max_wait_s: float) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.thread: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
        self.worker = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)
        if self.thread is not None:
            self.thread.shutdown(wait=False, cancel_futures=True)

    async def submit(self, item: Item) -> Result:
        """The result for ``item``, computed in a batch with whatever else arrived meanwhile."""
        if self.worker is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        await self.queue.put((item, future))
        return await future

    async def _serve(self) -> None:
        while True:
            batch = [await self.queue.get()]
            if self.queue.qsize() < self.max_batch - 1:
                await asyncio.sleep(self.max_wait_s)
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            batch = [(item, future) for item, future in batch if not future.done()]  # done: its request gave up
            if not batch:
                continue
            futures = [future for _, future in batch]
            try:
                results = await asyncio.get_running_loop().run_in_executor(
                    self.thread, self.run_batch, [item for item, _ in batch])
            except Exception as error:  # this batch's requests fail; the service goes on
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
                continue
            for future, result in zip(futures, results):
                if not future.done():  # done already: its client went away
                    future.set_result(result)
