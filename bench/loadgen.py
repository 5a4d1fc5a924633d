"""A lean HTTP/1.1 load generator for the benchmarks: pre-built requests over keep-alive
connections on one asyncio loop.

The benchmarks share two cores with the server they measure, so the client must cost little:
every request is formatted once before the clock starts, and a response is read by its
``Content-Length`` without a general-purpose HTTP client's machinery (httpx spends about as
long per request as the server's own HTTP layer).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    """What came back: the latencies of the expected answers and the others' first bytes."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0


def post_requests(host: str, port: int, path: str, bodies: list[bytes]) -> list[bytes]:
    """Each JSON body as a complete keep-alive POST request."""
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    return [f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body for body in bodies]


async def _connection(host: str, port: int, requests: list[bytes], expected: int, result: LoadResult) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            if status == expected:
                result.latencies.append(time.perf_counter() - started)
            else:
                result.failures.append(f"{status} {body[:160].decode(errors='replace')}")
    finally:
        writer.close()


def run(host: str, port: int, requests: list[bytes], *, connections: int, expected: int = 201) -> LoadResult:
    """Send ``requests`` over ``connections`` keep-alive connections (each takes every
    ``connections``-th request, in order); time from the first byte to the last answer."""
    result = LoadResult()

    async def main() -> None:
        started = time.perf_counter()
        await asyncio.gather(*(_connection(host, port, requests[n::connections], expected, result)
                               for n in range(connections)))
        result.elapsed = time.perf_counter() - started

    asyncio.run(main())
    return result
