"""How values cross a process boundary: one serialiser for every backend that needs one.

Used by the process backend (calls, results, errors), the process primitives
(queue items, values) and the Dask backend (calls, outcomes, its queues and
values), so the same values cross everywhere and fail the same way::

    submit(fn, *args) ─► PickledAtSubmit.check ─► encode(call) ──────────────┐
                           │ fails: diagnose ─► SerializationError naming     │ kept for
                           │        "argument 2", "keyword 'x'",              │ this thread's
                           │        "element [1] of argument 2", ...          │ dispatch
    dispatch(task) ──► PickledAtSubmit.take ◄─────────────────────────────────┘
                           (the same call: its bytes; another one: encode it now)

    encode = dumps (process messages)   ─► (pickle stream, out-of-band buffers)
           | dumps_bytes (queue items, values, Dask payloads) ─► bytes
    both:  _Pickler: plain C pickle, protocol 5
             └─ reducer_override: lambdas, closures, local functions, anything of
                ``__main__`` and of modules shipped by value ─► cloudpickle, embedded
           anything else plain pickle cannot name ─► the whole value by cloudpickle
    dumps_bytes first tries pickle.dumps alone, and keeps its bytes if they name nothing
    of __main__ (and no module is shipped by value): the common item, at C speed
    loads(stream, buffers) ─► the value (plain pickle.loads reads both kinds)

Out of band: ``dumps`` hands buffers of 64 KiB or more (a NumPy array, a
``PickleBuffer``) back beside the stream, and the process wire writes them
straight from the array's memory; ``dumps_bytes`` keeps everything in one
``bytes``, as a shared-memory ring or a Dask variable needs.

A ``__main__`` function or class without a closure sent in a process message
is serialised by value once per process and rebuilt once per worker (see
``_rebuild``): those workers belong to this process, so its token cannot be
confused with another sender's.  A queue item, a value or a Dask payload may
be read by any process, so it always carries the function in full.
"""

from __future__ import annotations

import io
import itertools
import os
import pickle
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import FunctionType, ModuleType
from typing import Any, Generic, TypeVar

from ._calls import run_chunk
from ._errors import SerializationError

__all__ = [
    "OUT_OF_BAND_MIN",
    "Payload",
    "PickledAtSubmit",
    "call_parts",
    "diagnose",
    "dumps",
    "dumps_bytes",
    "dumps_value",
    "loads",
    "ship_by_value",
]

#: Buffers smaller than this are kept in the pickle stream: a separate buffer
#: costs a length field and an iovec, worth it only for large data.
OUT_OF_BAND_MIN = 64 * 1024

#: (pickle stream, out-of-band buffers)
Payload = tuple[bytes, list[pickle.PickleBuffer]]

_P = TypeVar("_P")


# ------------------------------------------------------------------ the pickler


class _Pickler(pickle.Pickler):
    """Plain (C-speed) pickle, with functions and classes that need it sent by value.

    Plain pickle stores a function or class by reference (``module.name``).
    That cannot work for lambdas and local functions, nor for objects of
    ``__main__``, which the receiver may not have (forkserver, spawn, an
    interactive session, a function defined after the worker started, a Dask
    worker), nor for modules shipped by value (``ship_by_value``).  Those
    objects alone are serialised by cloudpickle and embedded; everything else
    stays on the fast path.
    """

    # True: a closure-free function or class is serialised once and rebuilt once
    # per receiver (see _cached_by_value); only for process messages.
    _cache = False

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is FunctionType:
            module = obj.__module__
            if module == "__main__" or "<" in obj.__qualname__ or _shipped(module):
                if self._cache and obj.__closure__ is None:
                    return _cached_by_value(obj)
                return _by_value(obj)
        elif isinstance(obj, type) and (
            obj.__module__ == "__main__"
            or "<locals>" in obj.__qualname__
            or _shipped(obj.__module__)
        ):
            return _cached_by_value(obj) if self._cache else _by_value(obj)
        return NotImplemented


class _CachingPickler(_Pickler):
    _cache = True


def _shipped(module: str | None) -> bool:
    """Whether cloudpickle was told to send ``module`` (or a package of it) by value."""
    cloudpickle = sys.modules.get("cloudpickle")
    if cloudpickle is None or not module:
        return False  # nothing can be registered before cloudpickle is imported
    registry = cloudpickle.list_registry_pickle_by_value()
    if not registry:
        return False
    while module:
        if module in registry:
            return True
        module = module.rpartition(".")[0]
    return False


def ship_by_value(module: ModuleType) -> None:
    """Send ``module``'s functions and classes by value, for receivers that cannot import it."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)


_tokens = itertools.count()
_sent: weakref.WeakKeyDictionary[Any, tuple[tuple[int, int], bytes]] = weakref.WeakKeyDictionary()
_rebuilt: dict[tuple[int, int], Any] = {}
_REBUILT_MAX = 512


def _by_value(obj: Any) -> tuple[Any, tuple[bytes]]:
    import cloudpickle

    return pickle.loads, (cloudpickle.dumps(obj, protocol=5),)


def _cached_by_value(obj: Any) -> tuple[Any, tuple[tuple[int, int], bytes]]:
    entry = _sent.get(obj)
    if entry is None:
        import cloudpickle

        entry = ((os.getpid(), next(_tokens)), cloudpickle.dumps(obj, protocol=5))
        _sent[obj] = entry
    return _rebuild, entry


def _rebuild(token: tuple[int, int], data: bytes) -> Any:
    """Unpickle a by-value function or class once per worker, then reuse it."""
    obj = _rebuilt.get(token)
    if obj is None:
        obj = pickle.loads(data)
        if len(_rebuilt) >= _REBUILT_MAX:
            del _rebuilt[next(iter(_rebuilt))]
        _rebuilt[token] = obj
    return obj


class _ReusablePickler:
    """A ``_Pickler`` and its stream, set up once and reused for many values."""

    __slots__ = ("_buffers", "_pickler", "_stream")

    def __init__(self, out_of_band: bool) -> None:
        self._stream = io.BytesIO()
        self._buffers: list[pickle.PickleBuffer] = []
        if out_of_band:
            self._pickler: pickle.Pickler = _CachingPickler(
                self._stream, 5, buffer_callback=self._keep
            )
        else:
            self._pickler = _Pickler(self._stream, 5)

    def _keep(self, buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < OUT_OF_BAND_MIN:
            return True  # small: serialise it in band
        self._buffers.append(buffer)
        return False

    def payload(self, obj: Any) -> Payload:
        stream, pickler = self._stream, self._pickler
        try:
            pickler.dump(obj)
            return stream.getvalue(), self._buffers
        finally:
            # Ready for the next object, whether or not this one pickled.
            pickler.clear_memo()
            stream.seek(0)
            stream.truncate()
            self._buffers = []


# Spare picklers, by kind: each thread pops one of its own (list.pop is atomic).
_spare_out: list[_ReusablePickler] = []
_spare_in: list[_ReusablePickler] = []
_SPARE_MAX = 8

# Values that plain pickle always writes in band, with nothing to send by value.
_PLAIN = frozenset({int, float, str, bytes, bool, type(None), complex})


def _plain(obj: Any) -> bool:
    kind = type(obj)
    return kind in _PLAIN or (kind is tuple and _PLAIN.issuperset(map(type, obj)))


def dumps(obj: Any) -> Payload:
    """Serialise ``obj`` for a process message: large buffers are returned out of band.

    Raises:
        Exception: whatever pickling raised if even cloudpickle cannot do it.
    """
    if _plain(obj):
        return pickle.dumps(obj, 5), []  # the common small result: no pickler to set up
    try:
        pickler = _spare_out.pop()
    except IndexError:
        pickler = _ReusablePickler(out_of_band=True)
    try:
        payload = pickler.payload(obj)
    except (pickle.PicklingError, AttributeError, TypeError):
        # Something else plain pickle cannot name (an object holding a lambda
        # in a slot, say); a genuinely unpicklable value fails again below.
        pass
    else:
        if len(_spare_out) < _SPARE_MAX:
            _spare_out.append(pickler)
        return payload
    import cloudpickle

    # This pickler is not put back: the buffers list it fills is returned.
    stream = cloudpickle.dumps(obj, protocol=5, buffer_callback=pickler._keep)
    return stream, pickler._buffers


def dumps_bytes(obj: Any) -> bytes:
    """Serialise ``obj`` into one ``bytes``, everything in band.

    Raises:
        Exception: whatever pickling raised if even cloudpickle cannot do it.
    """
    loaded = sys.modules.get("cloudpickle")
    if loaded is None or not loaded.list_registry_pickle_by_value():
        # No module is shipped by value: plain pickle at C speed, kept unless it named
        # something of __main__, which must go by value (a lambda or a local function
        # makes it fail instead).  A value that merely holds the text "__main__" only
        # takes the slower path below.
        try:
            plain = pickle.dumps(obj, 5)
        except Exception:
            pass
        else:
            if b"__main__" not in plain:
                return plain
    try:
        pickler = _spare_in.pop()
    except IndexError:
        pickler = _ReusablePickler(out_of_band=False)
    try:
        stream = pickler.payload(obj)[0]
    except (pickle.PicklingError, AttributeError, TypeError):
        pass  # as in dumps: cloudpickle may still manage
    else:
        if len(_spare_in) < _SPARE_MAX:
            _spare_in.append(pickler)
        return stream
    if len(_spare_in) < _SPARE_MAX:
        _spare_in.append(pickler)  # reset by payload(), and it holds no buffers
    import cloudpickle

    data: bytes = cloudpickle.dumps(obj, protocol=5)
    return data


def dumps_value(obj: Any, what: str) -> bytes:
    """``dumps_bytes(obj)``, or a ``SerializationError`` naming ``what`` (and the element) fails.

    Raises:
        SerializationError: ``obj`` cannot be pickled, e.g. "element [1] of queue
            item of type lock cannot be serialised: ...".
    """
    try:
        return dumps_bytes(obj)
    except Exception as exc:
        raise diagnose([(what, obj)], exc, what, type(obj).__name__) from exc


def loads(stream: bytes | bytearray | memoryview, buffers: Sequence[Any] = ()) -> Any:
    """Rebuild a value from ``dumps``'s stream and buffers, or from ``dumps_bytes``'s bytes."""
    return pickle.loads(stream, buffers=buffers)


# ------------------------------------------------------------------ diagnosis

# How deep diagnose looks into plain containers for the element that fails.
_DEPTH = 4


def diagnose(
    parts: Iterable[tuple[str, Any]], exc: BaseException, what: str, type_name: str
) -> SerializationError:
    """Name the first of ``parts`` that will not pickle (called only after pickling failed).

    Each part is ``(name, value)``, e.g. ``("argument 2", value)``.  A tuple,
    list or dict part is searched for the element that fails, which is named by
    its position: ``element [1]['conn'] of argument 2``.  If no part fails
    alone, the error names ``what`` (of type ``type_name``) with ``exc``.
    """
    for name, value in parts:
        error = _first_failure(name, "", value, 0)
        if error is not None:
            return error
    return SerializationError(what, type_name, _reason(exc))


def _first_failure(name: str, path: str, value: Any, depth: int) -> SerializationError | None:
    try:
        dumps_bytes(value)
    except Exception as exc:
        if depth < _DEPTH:
            for key, item in _elements(value):
                error = _first_failure(name, f"{path}[{key!r}]", item, depth + 1)
                if error is not None:
                    return error
        where = f"element {path} of {name}" if path else name
        return SerializationError(where, type(value).__name__, _reason(exc))
    return None


def _elements(value: Any) -> Iterator[tuple[Any, Any]]:
    kind = type(value)
    if kind is dict:
        return iter(value.items())
    if kind is list or kind is tuple:
        return enumerate(value)
    return iter(())


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def call_parts(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    """The parts of a call, named as ``SerializationError`` names them.

    ``"the function"``, ``"argument 1"``, ``"keyword 'x'"``; for a map chunk
    (``run_chunk``), ``"argument 1 of map item 3"``.
    """
    if fn is run_chunk and len(args) >= 2:
        user_fn, items = args[:2]
        yield "the function", user_fn
        for index, item in enumerate(items):
            for position, value in enumerate(item, 1):
                yield f"argument {position} of map item {index}", value
        return
    yield "the function", fn
    for position, value in enumerate(args, 1):
        yield f"argument {position}", value
    for key, value in kwargs.items():
        yield f"keyword {key!r}", value


# ------------------------------------------------------- pickled once, at submit


class PickledAtSubmit(threading.local, Generic[_P]):
    """Pickle a call at ``submit``, in the caller, and hand the bytes to its dispatch.

    ``check`` runs in ``submit`` before the task exists, so an argument that
    will not pickle is the caller's ``SerializationError``, raised there;
    ``take`` in ``dispatch`` returns the same bytes when it is handed the same
    call (the same ``fn``, ``args`` and ``kwargs`` objects) on the same thread,
    and pickles the call afresh otherwise (a queued task, a retry).
    """

    def __init__(
        self,
        encode: Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], _P],
        parts: Callable[
            [Callable[..., Any], tuple[Any, ...], dict[str, Any]], Iterable[tuple[str, Any]]
        ] = call_parts,
    ) -> None:
        self._encode = encode
        self._parts = parts
        self._last: tuple[Any, Any, Any, _P] | None = None

    def check(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Pickle the call, keeping the result for ``take``.

        Raises:
            SerializationError: naming the part of the call that will not pickle.
        """
        try:
            payload = self._encode(fn, args, kwargs)
        except Exception as exc:
            raise diagnose(
                self._parts(fn, args, kwargs), exc, "the call", type(fn).__name__
            ) from exc
        self._last = (fn, args, kwargs, payload)

    def take(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _P:
        """The call's bytes: those ``check`` made for it on this thread, else new ones."""
        last = self._last
        if last is not None:
            self._last = None  # one use; and it holds the call's arguments
            if last[0] is fn and last[1] is args and last[2] is kwargs:
                return last[3]
        return self._encode(fn, args, kwargs)
