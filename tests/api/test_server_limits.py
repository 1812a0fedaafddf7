"""`smsrelay api` as a real process under hostile clients: slow senders and a flood of large bodies."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.api.test_server import serving, start_api, stop, wait_until_ready

MiB = 1024 * 1024
# A Twilio instance, so that its receipt route reads (and checks) what it is sent.
TWILIO = (
    '{"simulator": {}, "twilio": {"account_sid": "AC' + "0" * 32 + '",'
    ' "auth_token": "t", "sender": "+14155550100"}}'
)


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def unread_bytes(port: int) -> int:
    """Bytes waiting in the kernel for the server listening on ``port`` to read them."""
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                total += int(fields[4].split(":")[1], 16)
    return total


def address(base: str) -> tuple[str, int]:
    """Host and port of a base URL."""
    parts = urlsplit(base)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def trickle_until_closed(sock: socket.socket, data: bytes, seconds: float) -> float | None:
    """Send ``data`` a byte every 0.1 s; seconds until the server closed, or None if it never did."""
    sock.settimeout(0.1)
    started = time.monotonic()
    for byte in data:
        if time.monotonic() - started > seconds:
            return None
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:  # reset or broken pipe: closed too
            return time.monotonic() - started
    return None


def test_slow_header_trickle_is_dropped_within_the_header_timeout(
    tmp_path: Path, amqp_url: str
) -> None:
    """A client trickling its headers a byte at a time is cut off after header_timeout (5 s), not held."""
    proc, base = start_api(tmp_path, amqp_url)
    try:
        wait_until_ready(base, proc, ready=serving)
        with socket.create_connection(address(base)) as sock:
            request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
            elapsed = trickle_until_closed(sock, request, seconds=20)
        assert elapsed is not None, "the slow client was still connected after 20 s"
        assert 4 < elapsed < 15
        wait_until_ready(base, proc, ready=serving)  # and the server still serves everyone else
    finally:
        stop(proc)


def test_slow_body_trickle_is_dropped_within_the_body_timeout(
    tmp_path: Path, amqp_url: str
) -> None:
    """A request whose body trickles in is dropped body_timeout after its headers."""
    proc, base = start_api(tmp_path, amqp_url, SMSRELAY_API_LIMITS__BODY_TIMEOUT="1")
    try:
        wait_until_ready(base, proc, ready=serving)
        with socket.create_connection(address(base)) as sock:
            sock.sendall(
                b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: k-1\r\n"
                b"Content-Length: 1000\r\n\r\n"
            )
            elapsed = trickle_until_closed(sock, b"b" * 1000, seconds=20)
        assert elapsed is not None and elapsed < 10
    finally:
        stop(proc)


async def send_large_body(
    host: str, port: int, size: int, done: asyncio.Queue[bool], hold: asyncio.Event
) -> None:
    """POST a receipt declaring ``size`` bytes and send all but the last one, then hold on.

    Reports to ``done`` once it has sent them (True) or the server refused it (False).
    """
    writer = None
    try:
        _, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"POST /v1/receipts/twilio HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"X-Twilio-Signature: forged\r\nContent-Length: %d\r\n\r\n" % size
        )
        chunk = b"p=" + b"x" * (64 * 1024 - 2)
        for _ in range((size - 1) // len(chunk)):
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), timeout=30)
    except (OSError, TimeoutError):
        done.put_nowait(False)  # refused and closed by the server
    else:
        done.put_nowait(True)
        await hold.wait()
    finally:
        if writer is not None:
            writer.close()


async def test_many_concurrent_large_bodies_keep_memory_bounded(
    tmp_path: Path, amqp_url: str
) -> None:
    """300 unsigned 1 MiB receipt bodies at once cost the API well under 300 MB: the excess is refused."""
    proc, base = start_api(tmp_path, amqp_url, SMSRELAY_PROVIDERS=TWILIO)
    hold = asyncio.Event()
    done: asyncio.Queue[bool] = asyncio.Queue()
    try:
        await asyncio.to_thread(wait_until_ready, base, proc, ready=serving)
        before = rss_bytes(proc.pid)
        host, port = address(base)
        senders = [
            asyncio.create_task(send_large_body(host, port, MiB, done, hold)) for _ in range(300)
        ]
        outcomes = [await asyncio.wait_for(done.get(), timeout=60) for _ in senders]
        # Measured once the server has read (or dropped) everything the clients sent.
        deadline = time.monotonic() + 60
        while unread_bytes(port) and time.monotonic() < deadline:  # noqa: ASYNC110 (polls the kernel)
            await asyncio.sleep(0.1)
        grown = rss_bytes(proc.pid) - before
        hold.set()
        await asyncio.gather(*senders)
    finally:
        hold.set()
        stop(proc)
    print(f"RSS grew by {grown / MiB:.0f} MiB; {outcomes.count(True)} of 300 bodies sent")
    assert grown < 120 * MiB, f"RSS grew by {grown // MiB} MiB"
