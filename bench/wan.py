"""A wide-area link on loopback: a TCP proxy that delays each direction and shares a bandwidth.

    with Wan(rtt_ms=40, mbit=100) as wan:
        wan.forward(listen_port, upstream_port)                 # same namespace
        wan.forward(port, port, netns="/proc/<pid>/ns/net")     # into a server's own namespace

Every byte pays half the round trip on its way, in each direction, and waits for its turn
on a link of `mbit` shared by all connections in that direction (so eight parallel
transfers share 100 Mbit/s, as on a real uplink). Each connection buffers at most about
two bandwidth-delay products before it stops reading, which stands in for TCP's window.

Forwarding into a network namespace lets a server keep its own ports: an FTP server run in
a namespace of its own (a container with no network) announces passive ports on
127.0.0.1, and the proxy listens on the host's 127.0.0.1 at the same numbers, so the
control connection and every data connection cross the slow link. No address but
127.0.0.1 is ever used, in either namespace. The kernel here has no netem; this is the
userspace stand-in.
"""

import asyncio
import ctypes
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

CLONE_NEWNET = 0x40000000
CHUNK = 64 * 1024


@dataclass
class Direction:
    """One direction of the link: its serialization clock, shared by every connection."""

    bytes_per_s: float
    free_at: float = 0.0

    def depart(self, now: float, size: int) -> float:
        """Return when `size` bytes handed over at `now` have left the sender."""
        start = max(now, self.free_at)
        self.free_at = start + size / self.bytes_per_s
        return self.free_at


@dataclass
class Wan:
    """A link of `rtt_ms` round trip and `mbit` per direction; proxies run on a thread."""

    rtt_ms: float
    mbit: float = 100.0
    up: Direction = field(init=False)
    down: Direction = field(init=False)
    moved: int = 0  # bytes carried, both directions
    moved_down: int = 0  # bytes carried from the server to the client

    def __post_init__(self) -> None:
        rate = self.mbit * 1_000_000 / 8
        self.up, self.down = Direction(rate), Direction(rate)
        self.one_way = self.rtt_ms / 2000
        self.window = max(256 * 1024, int(2 * rate * self.rtt_ms / 1000))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.servers: list[asyncio.AbstractServer] = []
        self.executors: dict[str, ThreadPoolExecutor] = {}

    def __enter__(self) -> "Wan":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        async def close() -> None:
            for server in self.servers:
                server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        for executor in self.executors.values():
            executor.shutdown(wait=False)

    def forward(self, listen: int, upstream: int, netns: str | None = None) -> None:
        """Accept on 127.0.0.1:`listen`, connect to 127.0.0.1:`upstream` (in `netns`)."""
        future = asyncio.run_coroutine_threadsafe(self._listen(listen, upstream, netns), self.loop)
        self.servers.append(future.result(10))

    def reachable(self, port: int, netns: str | None = None, timeout: float = 30) -> None:
        """Return once 127.0.0.1:`port` (in `netns`) accepts a connection."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._connector(netns).submit(_connect, port).result(5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    async def _listen(
        self, listen: int, upstream: int, netns: str | None
    ) -> asyncio.AbstractServer:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                sock = await self.loop.run_in_executor(self._connector(netns), _connect, upstream)
                up_reader, up_writer = await asyncio.open_connection(sock=sock)
            except Exception:  # a refused upstream and a failed setns alike
                writer.close()
                return
            writers = (writer, up_writer)
            await asyncio.gather(
                self._pump(reader, up_writer, self.up, writers),
                self._pump(up_reader, writer, self.down, writers),
                return_exceptions=True,
            )
            for each in writers:
                each.close()

        return await asyncio.start_server(accepted, "127.0.0.1", listen, reuse_address=True)

    def _connector(self, netns: str | None) -> ThreadPoolExecutor:
        """One thread per namespace, moved into it once: sockets it makes live there."""
        key = netns or ""
        if key not in self.executors:
            self.executors[key] = ThreadPoolExecutor(1, initializer=_enter, initargs=(netns,))
        return self.executors[key]

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        way: Direction,
        both: tuple[asyncio.StreamWriter, ...],
    ) -> None:
        """Carry one direction; an end of file passes on, an error closes both ways."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        in_flight = 0
        room = asyncio.Event()
        room.set()

        async def deliver() -> None:
            nonlocal in_flight
            while True:
                due, data = await queue.get()
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                in_flight -= len(data)
                self.moved += len(data)
                if way is self.down:
                    self.moved_down += len(data)
                if in_flight <= self.window:
                    room.set()

        delivering = asyncio.create_task(deliver())
        try:
            while True:
                await room.wait()
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    data = b""
                now = self.loop.time()
                queue.put_nowait((way.depart(now, len(data)) + self.one_way, data))
                if not data:
                    break
                in_flight += len(data)
                if in_flight > self.window:
                    room.clear()
            await delivering
        except (OSError, asyncio.CancelledError):
            for each in both:
                each.close()
        finally:
            delivering.cancel()


def _enter(netns: str | None) -> None:
    if netns is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(netns, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
    finally:
        os.close(fd)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock
