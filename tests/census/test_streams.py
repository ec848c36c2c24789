"""``<ns>_iostreams_open`` and the IOStream buffer gauges, against a real slow consumer: a raw
socket that completes the WebSocket handshake and then never reads while the server pushes."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Iterator

import pytest
import tornado.iostream
import tornado.netutil
import tornado.tcpserver
import tornado.web
import tornado.websocket
from appserver import AppServer
from prometheus_client.parser import text_string_to_metric_families

from tornado_memory_exporter.census.streams import StreamTally, add_stream

MiB = 1 << 20
PUSHED = 12 * MiB
PUSHERS: list[tornado.websocket.WebSocketHandler] = []


class PushSocket(tornado.websocket.WebSocketHandler):
    """Pushes PUSHED bytes at once without waiting for the client (no back-pressure)."""

    def open(self) -> None:
        PUSHERS.append(self)
        for _ in range(PUSHED // (256 * 1024)):
            self.write_message(b"x" * (256 * 1024), binary=True)


def queued(handler: tornado.websocket.WebSocketHandler) -> int:
    stream = handler.ws_connection.stream  # type: ignore[union-attr]
    return stream._total_write_index - stream._total_write_done_index


def stream_gauges(server: AppServer) -> dict[str, float]:
    server.call(server.exporter.census_now)
    return {
        s.name.removeprefix("tornado_"): s.value
        for family in text_string_to_metric_families(server.scrape())
        for s in family.samples
        if "iostream" in s.name
    }


@pytest.fixture
def slow_consumer() -> Iterator[tuple[AppServer, socket.socket, dict[str, float]]]:
    """The server, the consumer's socket, and the gauges before it connected (the census counts
    every stream of the process: other tests' abandoned loops may have left some open)."""
    PUSHERS.clear()
    with AppServer(tornado.web.Application([("/push", PushSocket)])) as server:
        before = stream_gauges(server)
        raw = socket.socket()
        raw.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
        )  # a small window: data stays queued
        raw.connect(("127.0.0.1", server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        raw.sendall(
            (
                f"GET /push HTTP/1.1\r\nHost: {server.target}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += raw.recv(1)  # byte by byte: read the 101 and nothing of the pushed data
        assert response.startswith(b"HTTP/1.1 101"), response
        try:
            yield server, raw, before
        finally:
            raw.close()
            PUSHERS.clear()


def test_a_slow_consumer_fills_the_write_buffer_gauges(
    slow_consumer: tuple[AppServer, socket.socket, dict[str, float]],
) -> None:
    server, raw, before = slow_consumer

    async def settled() -> int:
        while not PUSHERS:
            await asyncio.sleep(0.01)
        last = -1
        while queued(PUSHERS[0]) != last:  # the kernel's buffers are full: nothing moves any more
            last = queued(PUSHERS[0])
            await asyncio.sleep(0.2)
        return last

    held = server.call(settled)
    assert 4 * MiB < held <= PUSHED  # several MB that the client never read
    gauges = stream_gauges(server)
    assert gauges["iostream_write_buffer_max_bytes"] == held
    # the scrape's own connection was not open at the census; nothing else queues here
    assert gauges["iostream_write_buffer_bytes"] - before["iostream_write_buffer_bytes"] == held
    assert gauges["iostreams_open"] - before["iostreams_open"] == 1

    raw.close()  # the consumer goes away: its stream closes and its buffer is freed

    async def gone() -> None:
        while PUSHERS[0].ws_connection is not None:
            await asyncio.sleep(0.01)

    server.call(gone)
    assert stream_gauges(server) == before


class PartialReader(tornado.tcpserver.TCPServer):
    """Waits for 10 MB in one read: what arrives meanwhile sits in the stream's read buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.streams: list[tornado.iostream.IOStream] = []

    async def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple) -> None:
        self.streams.append(stream)
        try:
            await stream.read_bytes(10_000_000)
        except tornado.iostream.StreamClosedError:
            pass


def test_bytes_read_and_not_consumed_are_the_read_buffer_gauge() -> None:
    with AppServer() as server:
        before = stream_gauges(server)

        async def start() -> tuple[PartialReader, int]:
            reader = PartialReader()
            sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
            reader.add_sockets(sockets)
            return reader, sockets[0].getsockname()[1]

        reader, port = server.call(start)
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"y" * 1_000_000)

            async def buffered() -> None:
                while not reader.streams or reader.streams[0]._read_buffer_size < 1_000_000:
                    await asyncio.sleep(0.01)

            server.call(buffered)
            gauges = stream_gauges(server)

        async def stop() -> None:
            reader.stop()

        server.call(stop)
    assert gauges["iostream_read_buffer_bytes"] - before["iostream_read_buffer_bytes"] == 1_000_000
    assert gauges["iostreams_open"] - before["iostreams_open"] == 1
    assert gauges["iostream_write_buffer_bytes"] == before["iostream_write_buffer_bytes"]


def test_add_stream_sums_open_streams_only() -> None:
    open_a, open_b, closed = (tornado.iostream.IOStream(socket.socket()) for _ in range(3))
    try:
        open_a._total_write_index, open_a._total_write_done_index, open_a._read_buffer_size = (
            500,
            200,
            7,
        )
        open_b._total_write_index = 1000
        closed.close()
        tally = StreamTally()
        for obj in (open_a, open_b, closed, object(), "not a stream"):
            add_stream(tally, obj)
    finally:
        open_a.close()
        open_b.close()
    assert tally == StreamTally(
        open=2, write_buffer_bytes=1300, write_buffer_max_bytes=1000, read_buffer_bytes=7
    )
