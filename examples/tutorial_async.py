"""The tutorial's asynchronous, event-driven I/O: one loop serves many waits.

A thousand simulated requests (each waiting 0.2 s) run on the asyncio backend
in about 0.2 s; the calling code stays ordinary synchronous Python.
Run: python examples/tutorial_async.py
"""

import asyncio
import time

import taskkit


async def request(i: int) -> str:
    await asyncio.sleep(0.2)  # stands in for a network round trip
    return f"response {i}"


if __name__ == "__main__":
    with taskkit.open_executor("asyncio") as ex:
        start = time.perf_counter()
        responses = list(ex.map(request, range(1000)))
        print(f"{len(responses)} requests in {time.perf_counter() - start:.2f} s")
        print(responses[:3])
