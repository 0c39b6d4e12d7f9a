"""Reading known pages concurrently and handing them back in order.

Used when a listing's first page reported its ``size`` (see ``pagination.fan_out_urls``). At most
``lookahead`` pages are read or held ahead of the one being consumed, so a slow consumer does
not buffer a whole listing; the client's semaphore and budget bound what is actually in flight.
Reading stops after an empty page (rows were removed meanwhile) and, on an error or an early
exit, the pages still being read are cancelled. Imports only its siblings.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from exporter.bitbucket.pagination import Page

Target = TypeVar("Target")


async def read_in_order(
    read: Callable[[Target, int], Coroutine[Any, Any, Page]],
    targets: Sequence[Target],
    *,
    first_number: int,
    lookahead: int,
) -> AsyncGenerator[Page, None]:
    """``read(target, page_number)`` for each target, numbered from ``first_number``, in order."""
    queued = iter(enumerate(targets, start=first_number))
    pending: deque[asyncio.Task[Page]] = deque()

    def launch() -> None:
        for number, target in itertools.islice(queued, max(lookahead - len(pending), 0)):
            pending.append(asyncio.create_task(read(target, number)))

    try:
        launch()
        while pending:
            page = await pending.popleft()
            if page.values:
                # Refill before handing the page over: reading goes on while the caller works.
                launch()
            yield page
            if not page.values:
                return
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
