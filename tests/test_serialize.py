"""What crosses a process boundary, and how a value that cannot is named.

The same rule holds for process tasks, their results, process queue items and
values, and the Dask backend: plain pickle, with cloudpickle for what plain
pickle can only name (lambdas, closures, functions of ``__main__``).
"""

from __future__ import annotations

import pickle
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import taskkit
from taskkit import SerializationError
from taskkit._backends.process import _shm


def call_item(q: Any) -> Any:
    return q.get(timeout=30)()


def call_value(v: Any) -> Any:
    return v.get()()


def nbytes(data: Any) -> int:
    return len(memoryview(data).cast("B"))


def add(x: int, y: int = 0) -> int:
    return x + y


def make_closure(n: int) -> Callable[[], int]:
    def closure() -> int:
        return n * 2

    return closure


@pytest.fixture(scope="module")
def ex() -> Iterator[taskkit.Executor]:
    executor = taskkit.open_executor("process", max_workers=2)
    yield executor
    executor.shutdown(kill=True)


needs_shm = pytest.mark.skipif(not _shm.available(), reason=_shm.unavailable_reason)


# ------------------------------------------------ lambdas and closures cross everywhere


@needs_shm
def test_lambda_and_closure_through_a_process_queue(ex: taskkit.Executor) -> None:
    q = ex.queue()
    q.put(lambda: 41)
    q.put(make_closure(21))
    assert ex.submit(call_item, q).result(timeout=60) == 41
    assert ex.submit(call_item, q).result(timeout=60) == 42
    q.put(lambda: "here")
    assert q.get(timeout=30)() == "here"


@needs_shm
def test_lambda_and_closure_in_a_process_value(ex: taskkit.Executor) -> None:
    v = ex.value(lambda: 1)
    assert ex.submit(call_value, v).result(timeout=60) == 1
    v.set(make_closure(5))
    assert ex.submit(call_value, v).result(timeout=60) == 10
    assert v.update(lambda fn: make_closure(fn() + 1))() == 22


@needs_shm
def test_functions_and_classes_of_main_cross_by_value(
    run_python: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # With ``python -c`` no worker can import __main__: only a copy by value works.
    done = run_python(
        """
        import taskkit

        class Box:
            def __init__(self, n):
                self.n = n

        def double(x):
            return 2 * x

        def open_box(q):
            fn, box = q.get(timeout=30), q.get(timeout=30)
            return fn(box.n), type(box).__name__

        with taskkit.open_executor("process", max_workers=1) as ex:
            q = ex.queue()
            q.put(double)
            q.put(Box(21))
            print(ex.submit(open_box, q).result(timeout=60))
            v = ex.value(Box(1))
            print(type(v.get()) is Box, v.get().n)
        """,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["(42, 'Box')", "True 1"]


# ------------------------------------------- a value that will not pickle is named


def test_unpicklable_arguments_are_named_on_process(ex: taskkit.Executor) -> None:
    lock = threading.Lock()
    with pytest.raises(SerializationError, match=r"^argument 2 of type lock") as info:
        ex.submit(add, 1, lock)
    assert info.value.what == "argument 2"
    with pytest.raises(SerializationError, match=r"^keyword 'y' of type lock"):
        ex.submit(add, 1, y=lock)
    with pytest.raises(SerializationError) as info:
        ex.submit(add, (1, lock))
    assert info.value.what == "element [1] of argument 1"
    assert info.value.type_name == "lock"
    with pytest.raises(SerializationError) as info:
        ex.submit(add, 1, y={"ok": [1, 2], "conn": [3, lock]})
    assert info.value.what == "element ['conn'][1] of keyword 'y'"


def test_unpicklable_map_item_is_named_on_process(ex: taskkit.Executor) -> None:
    items = [1, 2, threading.Lock(), 4]
    with pytest.raises(SerializationError, match=r"argument 1 of map item 2 of type lock"):
        list(ex.map(add, items, chunksize=4))


@needs_shm
def test_unpicklable_queue_item_is_named(ex: taskkit.Executor) -> None:
    q = ex.queue()
    with pytest.raises(SerializationError, match=r"^queue item of type lock"):
        q.put(threading.Lock())
    with pytest.raises(SerializationError) as info:
        q.put(("job", 3, threading.Lock()))
    assert info.value.what == "element [2] of queue item"
    assert info.value.type_name == "lock"
    with pytest.raises(SerializationError, match=r"^element \['lock'\] of value of type lock"):
        ex.value(0).set({"n": 1, "lock": threading.Lock()})


def test_unpicklable_initargs_are_named() -> None:
    with pytest.raises(SerializationError) as info:
        taskkit.open_executor("process", initializer=print, initargs=(1, threading.Lock()))
    assert info.value.what == "element [1] of initargs"


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("this object stays where it was made")


def test_unpicklable_arguments_and_items_are_named_on_dask(dask_client: Any) -> None:
    ex = taskkit.open_executor("dask", client=dask_client)
    try:
        with pytest.raises(SerializationError, match=r"^argument 2 of type _Unpicklable"):
            ex.submit(add, 1, _Unpicklable())
        with pytest.raises(SerializationError) as info:
            ex.submit(add, 1, y=[0, {"x": _Unpicklable()}])
        assert info.value.what == "element [1]['x'] of keyword 'y'"
        q = ex.queue()
        with pytest.raises(SerializationError) as info:
            q.put((1, _Unpicklable()))
        assert info.value.what == "element [1] of queue item"
        q.put(lambda: 7)
        assert q.get(timeout=30)() == 7
        assert ex.submit(lambda n: make_closure(n)(), 4).result(timeout=60) == 8
    finally:
        ex.shutdown(wait=True, cancel_pending=True, kill=True)


# --------------------------------------------------- large buffers stay out of band


def test_large_arrays_travel_out_of_band() -> None:
    numpy = pytest.importorskip("numpy")
    from taskkit._core import _serialize

    array = numpy.arange(1 << 17, dtype=numpy.float64)  # 1 MiB
    stream, buffers = _serialize.dumps(("args", array))
    assert len(buffers) == 1
    assert numpy.shares_memory(numpy.frombuffer(buffers[0].raw(), numpy.float64), array)
    assert len(stream) < 1024
    copy = _serialize.loads(stream, buffers)[1]
    assert (copy == array).all()
    # A small array and a one-piece payload stay in band.
    assert _serialize.dumps(numpy.arange(10))[1] == []
    assert pickle.loads(_serialize.dumps_bytes(array)).tobytes() == array.tobytes()


def test_a_task_argument_is_sent_out_of_band(
    ex: taskkit.Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskkit._backends.process import _wire

    sent: list[int] = []
    send = _wire.send

    def counting_send(fd: int, tag: bytes, payload: Any) -> None:
        if tag == _wire.TASK:
            sent.append(sum(buffer.raw().nbytes for buffer in payload[1]))
        send(fd, tag, payload)

    monkeypatch.setattr(_wire, "send", counting_send)
    data = bytearray(4 << 20)
    assert ex.submit(nbytes, pickle.PickleBuffer(data)).result(timeout=60) == len(data)
    assert sent == [len(data)]


# --------------------------------------------------- the call pickled at submit


def test_the_call_pickled_at_submit_is_reused_once() -> None:
    from taskkit._core import _serialize

    encoded: list[Any] = []

    def encode(fn: Any, args: Any, kwargs: Any) -> bytes:
        encoded.append(args)
        return _serialize.dumps_bytes((fn, args, kwargs))

    pickled = _serialize.PickledAtSubmit(encode)
    args: tuple[Any, ...] = (1, [2])
    kwargs: dict[str, Any] = {}
    pickled.check(add, args, kwargs)
    first = pickled.take(add, args, kwargs)
    assert encoded == [args]
    assert pickled.take(add, args, kwargs) == first  # made again: the kept one was used
    assert len(encoded) == 2
    pickled.check(add, args, kwargs)
    pickled.take(add, (args[0], args[1]), kwargs)  # equal, not the same: pickled afresh
    assert len(encoded) == 4
    with pytest.raises(SerializationError, match=r"^keyword 'y'"):
        pickled.check(add, (1,), {"y": threading.Lock()})
