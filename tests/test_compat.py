"""``taskkit._core._compat`` (with its asyncio-free part ``_compat_mp``) is the one module
that uses private names of the standard library."""

from __future__ import annotations

import ast
import asyncio
import sys
import threading
from pathlib import Path

import taskkit
from taskkit._core import _compat

SOURCE = Path(taskkit.__file__).parent
# Documented functions whose names merely begin with an underscore.
PUBLIC = {("os", "_exit")}


def _private_uses(path: Path) -> list[str]:
    """Imports of private standard-library names, and ``module._name`` reads, in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    stdlib = sys.stdlib_module_names
    modules: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in stdlib:
                    modules[alias.asname or parts[0]] = alias.name
                    if any(part.startswith("_") for part in parts):
                        found.append(f"{path.name}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] not in stdlib or node.module == "__future__":
                continue
            for alias in node.names:
                private_name = alias.name.startswith("_") and not alias.name.endswith("__")
                if private_name or any(part.startswith("_") for part in parts):
                    found.append(
                        f"{path.name}:{node.lineno}: from {node.module} import {alias.name}"
                    )
                else:
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.endswith("__"):
            continue
        base = node.value
        while isinstance(base, ast.Attribute):
            base = base.value
        module = modules.get(base.id) if isinstance(base, ast.Name) else None
        if module is not None and (module, node.attr) not in PUBLIC:
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_compat_uses_private_standard_library_names() -> None:
    compat = (SOURCE / "_core" / "_compat.py", SOURCE / "_core" / "_compat_mp.py")
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path not in compat:
            found += _private_uses(path)
    assert found == []
    assert _private_uses(compat[0])  # the check sees them where they are


def test_compat_gives_the_c_locks_even_when_threading_lock_is_replaced() -> None:
    lock = _compat.allocate_lock()
    assert type(lock) is _compat.LockType
    assert type(lock).__module__ == "_thread"
    rlock = _compat.RLock()
    with rlock, rlock:
        state = _compat.rlock_release_save(rlock)
        assert rlock.acquire(blocking=False)  # released however often it was held
        rlock.release()
        _compat.rlock_acquire_restore(rlock, state)
    assert type(rlock).__module__ == "_thread"


def test_compat_reads_the_running_loop() -> None:
    assert _compat.get_running_loop_or_none() is None

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        return _compat.get_running_loop_or_none() is loop and (
            not _compat.has_loop_thread_id(loop)
            or _compat.loop_thread_id(loop) == threading.get_ident()
        )

    assert asyncio.run(main())
