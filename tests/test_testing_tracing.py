"""Which bytecodes of traced code are switch points."""

from __future__ import annotations

from typing import Any

from taskkit.testing import replay


class Box:
    def __init__(self) -> None:
        self.n = 0
        self.items = [1, 2, 3]


def counts(box: Box) -> None:
    for _ in range(3):
        box.n += 1


def ops(task: Any) -> list[str]:
    s = replay("")
    s.run([task], (Box(),))
    assert s.last_run is not None
    return [step.op for step in s.last_run.steps]


def test_the_loop_of_a_range_is_no_switch_point() -> None:
    assert "next item" not in ops(counts)
    assert ops(counts).count("write .n") == 3


def test_a_loop_over_a_name_range_that_is_not_the_builtin_is_one() -> None:
    source = "def counts(box):\n    for _ in range(3):\n        box.n += 1\n"
    namespace: dict[str, Any] = {"range": lambda n: [0] * n}  # a list, which others may change
    exec(compile(source, "<shadowed range>", "exec"), namespace)
    assert ops(namespace["counts"]).count("next item") == 4
