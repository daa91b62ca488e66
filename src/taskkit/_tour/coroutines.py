"""The coroutine and async I/O part of ``python -m taskkit tour``.

Two lessons of the tutorial: coroutines are cheap cooperative tasks -- until one of them
blocks, which stalls them all (made visible by the coroutine backend's BlockingWarning) --
and an asyncio event loop serves many network connections from one thread.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Generator

import taskkit
from taskkit import CoroutineExecutor

__all__ = ["tour_section"]

TASKS = 10_000


def _ping_pong(log: list[str], word: str, times: int) -> Generator[None, None, None]:
    for _ in range(times):
        log.append(word)
        yield  # a switch point: the other generator runs now


async def _nap() -> None:
    await taskkit.sleep(0.05)


async def _blocker() -> None:
    time.sleep(0.3)  # the mistake: a blocking call inside a coroutine


def _coroutines() -> None:
    print("\n== Coroutines: many cooperative tasks on one thread (tutorial: coroutines) ==")
    with taskkit.open_executor("coroutine") as ex:
        assert isinstance(ex, CoroutineExecutor)
        log: list[str] = []

        def match() -> Generator[object, None, None]:
            ping, pong = ex.spawn(_ping_pong, log, "ping", 3), ex.spawn(_ping_pong, log, "pong", 3)
            yield ping
            yield pong

        _ = ex.submit(match).result()
        print(f"two generator tasks, switching at each yield: {' '.join(log)}")

        async def many() -> None:
            handles = [ex.spawn(_nap) for _ in range(TASKS)]
            for handle in handles:
                await handle

        start = time.perf_counter()
        _ = ex.submit(many).result()
        print(
            f"{TASKS:,} tasks each awaiting taskkit.sleep(0.05) finished in "
            f"{time.perf_counter() - start:.2f} s: they all wait at once, on one thread"
        )

        async def with_one_blocker() -> float:
            start = time.perf_counter()
            naps = [ex.spawn(_nap) for _ in range(100)]
            blocker = ex.spawn(_blocker)
            for handle in naps:
                await handle
            naps_done = time.perf_counter() - start
            await blocker
            return naps_done

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", taskkit.BlockingWarning)
            took: float = ex.submit(with_one_blocker).result()
    print(
        f"100 such 0.05 s naps next to one task calling time.sleep(0.3): the naps took "
        f"{took:.2f} s -- one blocking call blocks them all.  The scheduler said:"
    )
    for warning in caught:
        print(f"  BlockingWarning: {str(warning.message).split(';')[0]}")


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.readline()
    await asyncio.sleep(0.1)  # a slow server: each reply takes 0.1 s
    writer.write(data.upper())
    await writer.drain()
    writer.close()


async def _client(port: int, i: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"hello {i}\n".encode())
    await writer.drain()
    reply = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return reply


async def _serve_and_ask(clients: int) -> list[bytes]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0, backlog=clients)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await asyncio.gather(*(_client(port, i) for i in range(clients)))


def _async_io() -> None:
    print("\n== Asynchronous, event-driven I/O on the asyncio backend (tutorial: asyncio) ==")
    clients = 200
    with taskkit.open_executor("asyncio") as ex:
        start = time.perf_counter()
        replies: list[bytes] = ex.submit(_serve_and_ask, clients).result(timeout=30)
        took = time.perf_counter() - start
    print(
        f"an echo server and {clients} clients on one event loop thread: {len(replies)} "
        f"replies (e.g. {replies[0].strip().decode()!r}) in {took:.2f} s, though each "
        "reply takes 0.1 s -- the loop waits on every socket at once"
    )


def tour_section() -> None:
    """Show cooperative tasks, a blocking call stalling them, and async I/O."""
    _coroutines()
    _async_io()
