"""Messages between the parent and one worker: framing (values are pickled by ``_serialize``).

A message is a fixed header, one pickle stream and zero or more out-of-band
buffers (pickle protocol 5: a NumPy array or a ``PickleBuffer`` is sent as
its raw bytes, written straight from its memory and read straight into the
memory the receiver keeps, with no copy into the pickle stream)::

    header  = tag (1 byte) | number of buffers (u32) | pickle length (u64)
    lengths = one u64 per buffer
    body    = pickle stream, then each buffer

Parent -> worker tags: ``T`` run a task ``(fn, args, kwargs)``, ``S`` set up
``(initializer, initargs, max_tasks)``, ``Q`` quit.  Worker -> parent: ``A`` set
up and ready (once, empty: a task's deadline counts from here, not from the
worker's start-up), ``R`` a result, ``C`` a map chunk's results (a list, or
plain ints packed as 64-bit integers, see ``pack_ints``; with its exception, if
any, encoded as for ``E``), ``E`` an error (see ``encode_error``), ``I`` the
initializer failed.

A worker answers each task before it is sent another, so there is never more
than one task or one answer in flight on a socket (``S`` may precede the first
``T``); there is no multiplexing to get wrong.  Neither side trusts the other's
bytes: ``Reader`` checks each header as it arrives and raises ``ProtocolError``
for anything an honest peer never sends.
"""

from __future__ import annotations

import os
import select
import struct
import time
import traceback
from collections.abc import Sequence
from typing import Any, Literal

from ..._core._serialize import OUT_OF_BAND_MIN as _OUT_OF_BAND_MIN
from ..._core._serialize import Payload, dumps, dumps_bytes, loads

__all__ = [
    "CHUNK",
    "ERROR",
    "INIT_FAILED",
    "QUIT",
    "RESULT",
    "SETUP",
    "TASK",
    "MESSAGE_LIMIT",
    "READY",
    "TO_PARENT",
    "TO_WORKER",
    "Payload",
    "ProtocolError",
    "decode_error",
    "dumps",
    "encode_error",
    "loads",
    "pack_ints",
    "Reader",
    "send",
    "unpack_ints",
]

TASK, SETUP, QUIT = b"T", b"S", b"Q"
RESULT, ERROR, INIT_FAILED, CHUNK, READY = b"R", b"E", b"I", b"C", b"A"

_HEADER = struct.Struct("!cIQ")
_LENGTH = struct.Struct("!Q")

# A map chunk whose results are all plain ints (exactly ``int``, each within
# 64 bits) travels as one block of native 64-bit integers instead of a pickled
# list: packing it costs the worker less than pickling, and the parent makes
# each int only when the consumer reaches it, straight from the block.
_PACKED_MIN = 64
# Native "l" where it is 64 bits: struct converts it on PyLong_AsLong's fast
# path, twice as fast as "q".
_INT64: Literal["l", "q"] = "l" if struct.calcsize("l") == 8 else "q"


def pack_ints(results: Sequence[Any]) -> bytes | None:
    """Return ``results`` as native 64-bit integers, or None if they are not all plain ints."""
    count = len(results)
    if count < _PACKED_MIN or type(results[0]) is not int:
        return None
    # Exact type: a bool or an IntEnum must come back as itself, not as an int.
    if list(map(type, results)).count(int) != count:
        return None
    try:
        return struct.pack(f"{count}{_INT64}", *results)
    except struct.error:  # an int beyond 64 bits
        return None


def unpack_ints(block: bytes) -> Sequence[int]:
    """The ints of a ``pack_ints`` block, made one by one as they are read."""
    return memoryview(block).cast(_INT64)


# ------------------------------------------------------------------ framing


def send(fd: int, tag: bytes, payload: Payload) -> None:
    """Write one message to ``fd`` (blocking); raises ``OSError`` if the peer is gone."""
    stream, buffers = payload
    if not buffers and len(stream) <= 65536:
        _write_all(fd, _HEADER.pack(tag, 0, len(stream)) + stream)
        return
    # Large: gather-write the parts rather than concatenate a copy of them.
    raws = [buffer.raw() for buffer in buffers]
    header = _HEADER.pack(tag, len(raws), len(stream))
    if raws:
        header += b"".join(_LENGTH.pack(raw.nbytes) for raw in raws)
    parts: list[Any] = [header, stream, *raws]
    total = sum(memoryview(part).nbytes for part in parts)
    written = _writev(fd, parts)
    while written < total:
        # A partial write: drop what went out and write the rest.
        while parts and written >= memoryview(parts[0]).nbytes:
            written -= memoryview(parts[0]).nbytes
            total -= memoryview(parts[0]).nbytes
            parts.pop(0)
        if written:
            parts[0] = memoryview(parts[0]).cast("B")[written:]
            total -= written
        written = _writev(fd, parts)


def _write_all(fd: int, data: bytes) -> None:
    try:
        written = os.write(fd, data)
    except BlockingIOError:
        written = 0
    if written == len(data):
        return
    view = memoryview(data)[written:]
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            _wait(fd, select.POLLOUT)


def _writev(fd: int, parts: list[Any]) -> int:
    while True:
        try:
            return os.writev(fd, parts)
        except BlockingIOError:
            _wait(fd, select.POLLOUT)


def _wait(fd: int, event: int) -> None:
    """Block until ``fd`` is ready (the parent's sockets are non-blocking)."""
    poller = select.poll()
    poller.register(fd, event)
    poller.poll()


class ProtocolError(Exception):
    """Bytes on a socket that are not a message of this protocol (see ``Reader``)."""


def _memory_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 1 << 48


#: No honest message is larger than this machine's memory.
MESSAGE_LIMIT = _memory_size()
#: What each side may be sent.
TO_WORKER = frozenset({TASK, SETUP, QUIT})
TO_PARENT = frozenset({RESULT, ERROR, INIT_FAILED, CHUNK, READY})


class Reader:
    """Reads whole messages from one file descriptor, checking each as it arrives.

    Nothing on the socket is trusted: a type this side is never sent, a count
    of buffers or a length no honest sender writes (a buffer below the
    out-of-band minimum, a total beyond this machine's memory) raises
    ``ProtocolError`` as soon as the bytes that show it are in, before anything
    is allocated for it.  On a non-blocking descriptor a message that has not
    fully arrived raises ``BlockingIOError`` and is kept: the next ``recv``
    continues it, so one slow or silent sender never holds up the reading
    thread.  ``since`` is when such a message last made progress (0.0: none is
    waiting), so the owner can give up on a sender that stopped half-way.
    """

    __slots__ = ("_accepts", "_ahead", "_frame", "_limit", "fd", "since")

    def __init__(self, fd: int, accepts: frozenset[bytes], limit: int = MESSAGE_LIMIT) -> None:
        self.fd = fd
        self._accepts = accepts
        self._limit = limit
        self._ahead = b""  # bytes read past the last whole message (or a header so far)
        self._frame: _Frame | None = None  # a message whose header is in, its body not yet
        self.since = 0.0

    def recv(self) -> tuple[bytes, bytes | bytearray, list[bytearray]] | None:
        """Read one message: ``(tag, pickle stream, buffers)``, or None at end of file.

        Raises:
            BlockingIOError: (non-blocking descriptor) no whole message yet.
            EOFError: the peer went away in the middle of a message.
            ProtocolError: the bytes are not a message of this protocol.
        """
        frame = self._frame
        if frame is None:
            data = self._ahead
            head = _parse_head(data, self._accepts, self._limit) if data else None
            while head is None:
                try:
                    more = os.read(self.fd, 65536)
                except BlockingIOError:
                    if data:
                        self.since = time.monotonic()
                    raise
                if not more:
                    if data:
                        raise EOFError("connection closed inside a message")
                    return None
                data = self._ahead = data + more if data else more
                head = _parse_head(data, self._accepts, self._limit)
            tag, sizes, end = head
            offset = end - sum(sizes)
            if len(data) >= end:  # the whole message is here (the common, small case)
                self._ahead = data[end:]
                self.since = 0.0
                at = offset + sizes[0]
                stream = data[offset:at]
                buffers = []
                for size in sizes[1:]:
                    buffers.append(bytearray(memoryview(data)[at : at + size]))
                    at += size
                return tag, stream, buffers
            frame = self._frame = _Frame(tag, sizes, memoryview(data)[offset:])
            self._ahead = b""
        try:
            frame.fill(self.fd)
        except BlockingIOError:
            self.since = time.monotonic()
            raise
        self._frame = None
        self.since = 0.0
        return frame.tag, frame.parts[0], frame.parts[1:]


def _parse_head(
    data: bytes, accepts: frozenset[bytes], limit: int
) -> tuple[bytes, list[int], int] | None:
    """``(tag, [stream length, *buffer sizes], end of the message)``; None until enough is in.

    Raises:
        ProtocolError: as soon as the bytes in show the header is not an honest one.
    """
    tag = data[:1]
    if tag not in accepts:
        raise ProtocolError(f"a message of unknown type {tag!r}")
    if len(data) < _HEADER.size:
        return None
    _, count, length = _HEADER.unpack_from(data)
    if count > limit // _OUT_OF_BAND_MIN:
        raise ProtocolError(f"a message of {count} buffers")
    offset = _HEADER.size + count * _LENGTH.size
    if len(data) < offset:
        return None
    if count:
        sizes = [length, *struct.unpack_from(f"!{count}Q", data, _HEADER.size)]
        if min(sizes[1:]) < _OUT_OF_BAND_MIN:
            raise ProtocolError("a message with a buffer below the out-of-band minimum")
        total = sum(sizes)
    else:
        sizes, total = [length], length
    if total > limit:
        raise ProtocolError(f"a message of {total} bytes, more than this machine's memory")
    return tag, sizes, offset + total


class _Frame:
    """A message whose header has been read: its parts, filled as bytes arrive."""

    __slots__ = ("_filled", "_part", "parts", "tag")

    def __init__(self, tag: bytes, sizes: list[int], have: memoryview) -> None:
        self.tag = tag
        self.parts = [bytearray(size) for size in sizes]  # pickle reads a bytearray too
        self._part = self._filled = 0
        self._take(have)

    def _take(self, data: memoryview) -> None:
        while data and self._part < len(self.parts):
            target = self.parts[self._part]
            taken = min(len(target) - self._filled, len(data))
            target[self._filled : self._filled + taken] = data[:taken]
            data = data[taken:]
            self._advance(taken)

    def _advance(self, count: int) -> None:
        self._filled += count
        parts = self.parts
        while self._part < len(parts) and self._filled == len(parts[self._part]):
            self._part += 1
            self._filled = 0

    def fill(self, fd: int) -> None:
        """Read the rest straight into the parts (no read-ahead past the message)."""
        parts = self.parts
        while self._part < len(parts):
            view = memoryview(parts[self._part])[self._filled :]
            got = os.readv(fd, [view])  # BlockingIOError: the caller keeps this frame
            if not got:
                raise EOFError("connection closed inside a message")
            self._advance(got)


# ------------------------------------------------------------------- errors


def encode_error(exc: BaseException) -> Payload:
    """Serialise a task's exception with its text and formatted traceback.

    The exception itself travels as a nested pickle so that, if its class
    cannot be rebuilt in the parent, the text and traceback still arrive.
    """
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    exc.__traceback__ = None
    try:
        inner: bytes | None = dumps_bytes(exc)
    except Exception:
        inner = None
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if type(exc).__module__ == "builtins":
        name = type(exc).__qualname__
    return dumps_bytes((inner, name, _message(exc), text)), []


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<the exception's str() failed>"


def decode_error(stream: bytes | bytearray) -> tuple[BaseException | None, str, str, str]:
    """Return ``(exception or None if it cannot be rebuilt, type name, message, traceback)``."""
    inner, name, message, text = loads(stream)
    exc: BaseException | None = None
    if inner is not None:
        try:
            exc = loads(inner)
        except KeyboardInterrupt:
            raise  # a Ctrl-C landing here is the user's, not the exception's
        except BaseException:  # SystemExit from a __reduce__ too: reported as text
            exc = None
        if not isinstance(exc, BaseException):
            exc = None
    return exc, name, message, text
