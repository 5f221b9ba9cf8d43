#!/usr/bin/env python3
"""Measures what slow clients cost a normal one: a normal client's request latency (p50, p99)
on its own, then while HOLD connections trickle their request headers a byte a second; and how
long the server let each trickling connection live before closing it.

    scripts/slow-clients.py http://127.0.0.1:28480 [--slow 500] [--requests 2000]

The server should run with its header deadline (HTTP_HEADER_TIMEOUT_SECONDS, default 10 s).
Standard library only; figures in docs/RELIABILITY.md ("Hostile traffic").
"""

import argparse
import asyncio
import statistics
import time
from urllib.parse import urlparse


async def trickle(host, port, closed_after):
    """Sends a request's start a byte a second until the server closes the connection."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        closed_after.append(None)
        return
    request = b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 200
    try:
        for byte in request:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1024), timeout=1.0) == b"":
                    break
                break  # any answer also ends the trickle
            except asyncio.TimeoutError:
                continue
    except (ConnectionError, OSError):
        pass
    closed_after.append(time.monotonic() - started)
    writer.close()


async def normal_client(host, port, requests):
    """Sends `requests` GET /health/live over one keep-alive connection; returns latencies in ms."""
    reader, writer = await asyncio.open_connection(host, port)
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        writer.write(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        latencies.append((time.perf_counter() - started) * 1000)
    writer.close()
    return latencies


def summary(latencies):
    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"p50 {statistics.median(ordered):.2f} ms, p99 {p99:.2f} ms, max {ordered[-1]:.2f} ms"


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_url")
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    url = urlparse(args.base_url)
    host, port = url.hostname, url.port or 80

    alone = await normal_client(host, port, args.requests)
    print(f"normal client alone: {summary(alone)}")

    closed_after = []
    slow = [asyncio.create_task(trickle(host, port, closed_after)) for _ in range(args.slow)]
    await asyncio.sleep(2)
    meanwhile = await normal_client(host, port, args.requests)
    print(f"normal client with {args.slow} trickling connections: {summary(meanwhile)}")
    await asyncio.gather(*slow)
    refused = sum(1 for held in closed_after if held is None)
    held = [held for held in closed_after if held is not None]
    print(
        f"trickling connections closed by the server: {len(held)} of {args.slow}"
        f" ({refused} could not connect), held {min(held):.1f} to {max(held):.1f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())
