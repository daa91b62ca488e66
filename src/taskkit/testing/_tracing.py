"""Which code is traced, and which of its bytecodes are switch points.

A controlled thread runs with two per-thread hooks:

* ``sys.settrace`` with opcode events, enabled only in frames of *traced* code (not the
  standard library, not site-packages, not taskkit's own modules).  Before a bytecode that
  reads or writes shared state (globals, attributes, subscripts, closure cells, iteration and
  ``in`` tests) the tracer asks the scheduler whether another task should run first.
* ``sys.setprofile``: a call from traced code into a C function (``items.pop()``) or into
  untraced Python (``q.put(x)`` in the standard library) is a switch point too, because the
  callee may touch shared state where no tracer sees it.  Calls into taskkit itself are not:
  taskkit's primitives report their own switch points through ``taskkit._core._control``.

Each switch point carries a *footprint*, ``(key, is_write)``, that the systematic search uses
to decide which reorderings can matter.  ``key`` is ``"*"`` when the access is unknown, which
conflicts with everything; over-approximating is always sound, only slower.
"""

from __future__ import annotations

import dis
import os
import sys
import sysconfig
import types
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

__all__ = [
    "ANY_READ",
    "exact_read",
    "holds_no_items",
    "call_sites",
    "ANY_WRITE",
    "SELF",
    "TRACED",
    "UNTRACED",
    "Footprint",
    "classify",
    "classify_frame",
    "conflicts",
    "visible_ops",
]

Footprint = "tuple[object, bool] | None"
FootprintT = tuple[object, bool] | None
ANY_WRITE: FootprintT = ("*", True)
ANY_READ: FootprintT = ("*", False)


def conflicts(a: FootprintT, b: FootprintT) -> bool:
    """Return True if two steps with these footprints may not commute.

    Keys: ``"*"`` (anything); ``("a", name)``, ``("g", id, name)``, ``("c", name)`` (an
    attribute, global or closure variable); ``("o", n)`` (a primitive); ``ITEMS`` (the items
    of some container) or ``("item", n)`` (the items of container ``n``); ``("x", key)``, a
    read of ``key`` known to load no container; a frozenset of keys (several at once).
    """
    if a is None or b is None:
        return False
    (ka, wa), (kb, wb) = a, b
    if not (wa or wb):
        return False
    if ka == kb or ka == "*" or kb == "*":
        return True
    if type(ka) is frozenset or type(kb) is frozenset:
        # an operation on several objects at once (a condition's wait also takes its lock)
        return any(
            conflicts((x, wa), (y, wb))
            for x in (ka if type(ka) is frozenset else (ka,))
            for y in (kb if type(kb) is frozenset else (kb,))
        )
    ba, bb = _base(ka), _base(kb)
    if ba == bb:
        return True
    if wa and wb and _is_items(ba) and _is_items(bb):
        return ba == ITEMS or bb == ITEMS  # two changes, one to a container not known
    # A container changed in place (items.pop()) may be read through any reference that was
    # loaded from an attribute, a global or a cell: `if self.items:` reads it with no
    # bytecode of its own.  So a write to items conflicts with every read that may have
    # loaded that container.
    if wa and not wb and _is_items(ba):
        return _may_see(kb, ba)
    if wb and not wa and _is_items(bb):
        return _may_see(ka, bb)
    return False


ITEMS = ("item",)


def _base(key: object) -> object:
    return key[1] if type(key) is tuple and len(key) == 2 and key[0] == "x" else key


def _is_items(key: object) -> bool:
    return type(key) is tuple and bool(key) and key[0] == "item"


def _may_see(read: object, items: object) -> bool:
    """May a read with key ``read`` observe the items written under ``items``?"""
    if type(read) is tuple and read and read[0] == "x":
        return False  # it loaded a value with no items of its own
    if _is_items(read):
        return read == ITEMS or items == ITEMS  # the same container, or one not known
    return True


def exact_read(key: object) -> object:
    """The key of a read of ``key`` that is known to have loaded no container."""
    return ("x", key)


def holds_no_items(value: object) -> bool:
    """True if code can examine ``value``'s contents only through switch points of its own.

    An int or a string has none; an instance of a class written in Python has attributes,
    read by attribute reads (switch points), and dunder methods, which a truth test or
    ``==`` calls with no switch point: they must be traced code (whose reads are switch
    points), or the class must have none of them (a ``Condition``, a lock).  A list, a dict,
    a tuple (which may hold a list), a ``collections.UserList`` or a C object (an array) can
    be examined by a bytecode with no switch point (a truth test, ``==``, unpacking), so a
    read that loaded one must conflict with changes to its items.
    """
    cls = type(value)
    if cls in ATOMIC:
        return True
    if not cls.__flags__ & _HEAPTYPE:
        return False  # a C type: may hold items a bytecode reads
    if isinstance(value, _ITEM_HOLDERS):
        return False
    plain = _plain_classes.get(cls)
    if plain is None:
        plain = _plain_classes[cls] = not any(
            _IMPLICIT.intersection(vars(klass)) and not _traced_class(klass)
            for klass in cls.__mro__[:-1]
        )
    return plain


def _traced_class(klass: type) -> bool:
    module = sys.modules.get(klass.__module__)
    filename = getattr(module, "__file__", None)
    return isinstance(filename, str) and classify(filename) == TRACED


_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python
# What a bytecode calls on a value with no switch point of its own (a truth test, ``==``,
# unpacking, ``in``): in untraced code (``collections.UserList``) it reads items unseen.
_IMPLICIT = frozenset(
    {
        "__bool__",
        "__len__",
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__iter__",
        "__contains__",
        "__getitem__",
    }
)
_plain_classes: dict[type, bool] = {}


UNTRACED, TRACED, SELF = 0, 1, 2

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# The tour (taskkit/_tour/) is example code written against the public API: it is not one of
# taskkit's own modules that report their own switch points, and is traced as a user's code.
_EXAMPLES_DIR = _PACKAGE_DIR + "_tour" + os.sep
_UNTRACED_DIRS = tuple(
    sorted(
        {
            os.path.abspath(path) + os.sep
            for name in ("stdlib", "platstdlib", "purelib", "platlib")
            if (path := sysconfig.get_paths().get(name))
        }
    )
)
_classes: dict[str, int] = {}


def classify(filename: str) -> int:
    """Return TRACED, UNTRACED or SELF (taskkit internals, which report their own switches)."""
    kind = _classes.get(filename)
    if kind is not None:
        return kind
    if filename.startswith("<"):
        kind = UNTRACED if filename.startswith("<frozen") else TRACED
    else:
        path = os.path.abspath(filename)
        if path.startswith(_EXAMPLES_DIR):  # traced even where taskkit is installed
            kind = TRACED
        elif path.startswith(_PACKAGE_DIR):
            kind = SELF
        elif path.startswith(_UNTRACED_DIRS):
            kind = UNTRACED
        else:
            kind = TRACED
    _classes[filename] = kind
    return kind


def classify_frame(frame: types.FrameType) -> int:
    """``classify`` for the code a frame runs, placing code made by ``exec`` by its module.

    A dataclass's ``__init__`` or a namedtuple's ``__new__`` comes from ``"<string>"``: it
    belongs to the module whose globals it runs in (traced for the code under test, taskkit's
    own for taskkit's), and a namedtuple's, which only builds a tuple, is never a switch point.
    """
    filename = frame.f_code.co_filename
    kind = classify(filename)
    if kind == TRACED and filename == "<string>":
        module_file = frame.f_globals.get("__file__")
        if isinstance(module_file, str):
            return classify(module_file)
        if str(frame.f_globals.get("__name__", "")).startswith("namedtuple_"):
            return SELF
    return kind


# Kinds of visible bytecodes.
LOAD_GLOBAL, STORE_GLOBAL, LOAD_ATTR, STORE_ATTR = 0, 1, 2, 3
READ_ITEM, WRITE_ITEM, LOAD_CELL, STORE_CELL, ITERATE, CALL_TYPE = 4, 5, 6, 7, 8, 9
TRUTH_LOCAL, TRUTH_GLOBAL = 10, 11
CALLEE_GLOBAL = 12  # a global loaded to be called: a read only if some code rebinds it
ITERATE_RANGE = 13  # the loop of ``for i in range(n):``: no shared state if range is builtin

_OPS = {
    "LOAD_GLOBAL": LOAD_GLOBAL,
    "STORE_GLOBAL": STORE_GLOBAL,
    "DELETE_GLOBAL": STORE_GLOBAL,
    "LOAD_ATTR": LOAD_ATTR,
    "STORE_ATTR": STORE_ATTR,
    "DELETE_ATTR": STORE_ATTR,
    "BINARY_SUBSCR": READ_ITEM,
    "STORE_SUBSCR": WRITE_ITEM,
    "DELETE_SUBSCR": WRITE_ITEM,
    "CONTAINS_OP": READ_ITEM,
    "LOAD_DEREF": LOAD_CELL,
    "LOAD_CLASSDEREF": LOAD_CELL,
    "STORE_DEREF": STORE_CELL,
    "FOR_ITER": ITERATE,
}
_TEXT = {
    LOAD_GLOBAL: "read {}",
    STORE_GLOBAL: "write {}",
    LOAD_ATTR: "read .{}",
    STORE_ATTR: "write .{}",
    READ_ITEM: "read item",
    WRITE_ITEM: "write item",
    LOAD_CELL: "read {}",
    STORE_CELL: "write {}",
    ITERATE: "next item",
    CALL_TYPE: "call {}()",
    TRUTH_LOCAL: "test {}",
    TRUTH_GLOBAL: "test {}",
    CALLEE_GLOBAL: "read {}",
    ITERATE_RANGE: "next item",
}
_JUMPS = frozenset(
    {
        "POP_JUMP_FORWARD_IF_FALSE",
        "POP_JUMP_FORWARD_IF_TRUE",
        "POP_JUMP_BACKWARD_IF_FALSE",
        "POP_JUMP_BACKWARD_IF_TRUE",
        "POP_JUMP_IF_FALSE",
        "POP_JUMP_IF_TRUE",
        "JUMP_IF_FALSE_OR_POP",
        "JUMP_IF_TRUE_OR_POP",
        "UNARY_NOT",
    }
)

# entry: (kind, name, text, guard): guard is the global name whose value is the object of a
# LOAD_ATTR (module attributes are not shared state) or the callee of a CALL.
Entry = tuple[int, str, str, "str | None"]
_tables: OrderedDict[types.CodeType, dict[int, Entry]] = OrderedDict()


def visible_ops(code: types.CodeType) -> dict[int, Entry]:
    """Return the switch-point bytecodes of ``code``, by offset (cached)."""
    table = _tables.get(code)
    if table is not None:
        return table
    table = {}
    previous: dis.Instruction | None = None
    pending_type: str | None = None  # a global loaded as a callee ("NULL + list")
    ranged = 0  # how far `range(<locals and constants>)`, GET_ITER, FOR_ITER has been seen
    for ins in dis.get_instructions(code):
        kind = _OPS.get(ins.opname)
        name = ins.argval if isinstance(ins.argval, str) else ""
        if ins.opname == "LOAD_GLOBAL" and ins.argrepr == "NULL + range":
            ranged = 1
        elif ranged == 1 and ins.opname in _RANGE_ARGS:
            pass
        elif ranged == 1 and ins.opname in _CALL_OPS:
            ranged = 2
        elif ranged == 2 and ins.opname == "GET_ITER":
            ranged = 3
        elif ranged == 3 and ins.opname == "FOR_ITER":
            ranged = 0
            table[ins.offset] = (ITERATE_RANGE, "range", _TEXT[ITERATE_RANGE], None)
            previous = ins
            continue
        else:
            ranged = 0
        if kind is not None:
            guard = None
            if kind in (LOAD_ATTR, STORE_ATTR) and previous is not None:
                if previous.opname == "LOAD_GLOBAL":
                    guard = str(previous.argval)
                elif previous.opname == "LOAD_FAST" and kind == LOAD_ATTR:
                    guard = "." + str(previous.argval)  # the owner is this local variable
            if kind == STORE_GLOBAL:
                _stored_anywhere.add(name)
            if kind == LOAD_GLOBAL and ins.argrepr.startswith("NULL"):
                # the callee of a call: the call itself is the switch point if it matters,
                # and so is this read if some code rebinds the name (checked when it runs)
                pending_type = name
                table[ins.offset] = (CALLEE_GLOBAL, name, _TEXT[CALLEE_GLOBAL].format(name), None)
            else:
                table[ins.offset] = (kind, name, _TEXT[kind].format(name), guard)
        elif (
            ins.opname in _JUMPS
            and previous is not None
            and previous.opname
            in (
                "LOAD_FAST",
                "LOAD_GLOBAL",
                "LOAD_DEREF",
            )
        ):
            # `if items:` / `while queue:` reads a container's length with no bytecode of its
            # own; a switch point when the variable holds a container (checked when it runs)
            truth = TRUTH_GLOBAL if previous.opname == "LOAD_GLOBAL" else TRUTH_LOCAL
            var = str(previous.argval)
            table[ins.offset] = (truth, var, _TEXT[truth].format(var), None)
        elif ins.opname in _CALL_OPS and pending_type is not None:
            # list(d), dict(d), sorted(d) ... read their argument inside C code that the
            # profiler does not report for types, so the call is a switch point when the
            # callee turns out to be a builtin type (checked when it runs).
            table[ins.offset] = (
                CALL_TYPE,
                pending_type,
                _TEXT[CALL_TYPE].format(pending_type),
                None,
            )
            pending_type = None
        previous = ins
    _tables[code] = table
    if len(_tables) > 4096:
        _tables.popitem(last=False)
    return table


# Names that some code stores with ``global``: its tables, once built, and a scan of the
# module's functions (see ``rebound``).
_stored_anywhere: set[str] = set()
_rebound: dict[int, tuple[int, frozenset[str]]] = {}


def rebound(module_globals: dict[str, Any], name: str) -> bool:
    """Return True if code may rebind global ``name`` of ``module_globals`` while tasks run.

    A read of a global is a shared access only if something writes the global: a
    ``global NAME`` assignment (``STORE_GLOBAL``) in any function, method or nested function
    of the module, found by scanning their code before any of it runs, or in any traced code
    that ran, or an assignment ``module.NAME = ...`` seen by the tracer (``note_rebound``).
    """
    key = id(module_globals)
    cached = _rebound.get(key)
    if cached is None or cached[0] != len(module_globals):
        names: set[str] = set()
        for value in list(module_globals.values()):
            for code in _codes_of(value, module_globals):
                _stored_names(code, names)
        cached = (len(module_globals), frozenset(names))
        _rebound[key] = cached
        if len(_rebound) > 4096:
            _rebound.clear()
    return name in cached[1] or name in _stored_anywhere


def note_rebound(name: str) -> None:
    """Record that code assigned ``module.name``: later reads of that global are shared."""
    _stored_anywhere.add(name)


def _codes_of(value: object, module_globals: dict[str, Any]) -> list[types.CodeType]:
    found: list[types.CodeType] = []
    seen = 0
    while value is not None and seen < 8:  # decorated functions: follow __wrapped__
        seen += 1
        if isinstance(value, types.FunctionType):
            found.append(value.__code__)
        elif isinstance(value, type) and value.__module__ == module_globals.get("__name__"):
            for attr in list(vars(value).values()):
                if isinstance(attr, (staticmethod, classmethod)):
                    attr = attr.__func__
                if isinstance(attr, property):
                    found.extend(
                        f.__code__
                        for f in (attr.fget, attr.fset, attr.fdel)
                        if isinstance(f, types.FunctionType)
                    )
                elif isinstance(attr, types.FunctionType):
                    found.append(attr.__code__)
            break
        inner = getattr(getattr(value, "hypothesis", None), "inner_test", None)
        value = getattr(value, "__wrapped__", None) or inner
    return found


def _stored_names(code: types.CodeType, names: set[str]) -> None:
    for ins in dis.get_instructions(code):
        if ins.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
            names.add(str(ins.argval))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _stored_names(const, names)


_RANGE_ARGS = frozenset({"LOAD_CONST", "LOAD_FAST", "PRECALL"})
_calls: dict[types.CodeType, frozenset[int]] = {}
_CALL_OPS = frozenset(
    {
        "CALL",
        "PRECALL",
        "CALL_FUNCTION",
        "CALL_FUNCTION_KW",
        "CALL_FUNCTION_EX",
        "CALL_METHOD",
        "CALL_KW",
    }
)
# `with cond:` calls Condition.__enter__ with no call instruction, yet it is a call to watch
_SITE_OPS = _CALL_OPS | {"BEFORE_WITH", "SETUP_WITH", "BEFORE_ASYNC_WITH"}


def call_sites(code: types.CodeType) -> frozenset[int]:
    """Return the offsets of the explicit call instructions of ``code`` (cached)."""
    sites = _calls.get(code)
    if sites is None:
        # A frame's f_lasti during a call may point into the instruction's inline cache
        # (CPython 3.11+), so every offset up to the next instruction counts.
        found: set[int] = set()
        instructions = list(dis.get_instructions(code))
        for ins, nxt in zip(instructions, [*instructions[1:], None], strict=False):
            if ins.opname in _SITE_OPS:
                end = nxt.offset if nxt is not None else ins.offset + 2
                found.update(range(ins.offset, end, 2))
        sites = frozenset(found)
        if len(_calls) > 4096:
            _calls.clear()
        _calls[code] = sites
    return sites


DATA_TYPES = frozenset({int, float, complex, str, bytes, bool, type(None), tuple, frozenset, range})
CONTAINERS = frozenset({list, dict, set, deque, bytearray, OrderedDict})
ATOMIC = frozenset({int, float, complex, str, bytes, bool, type(None), range})
_ITEM_HOLDERS = (list, dict, set, frozenset, tuple, deque, bytearray)
READ_METHODS = frozenset(
    {
        "get",
        "keys",
        "values",
        "items",
        "copy",
        "count",
        "index",
        "__contains__",
        "__len__",
        "__getitem__",
        "__iter__",
        "issubset",
        "issuperset",
        "isdisjoint",
        "union",
        "intersection",
        "difference",
        "symmetric_difference",
    }
)
PURE_BUILTINS = frozenset(
    {
        "isinstance",
        "issubclass",
        "id",
        "callable",
        "print",
        "repr",
        "format",
        "abs",
        "round",
        "divmod",
        "pow",
        "chr",
        "ord",
        "hex",
        "oct",
        "bin",
        "hash",
        "locals",
        "globals",
        "iter",
    }
)


def c_call_footprint(fn: Any) -> FootprintT | bool:
    """Return the footprint of calling C function ``fn``, or False if it is no switch point."""
    owner = getattr(fn, "__self__", None)
    cls = type(owner)
    if cls in DATA_TYPES:
        return False  # "x".join(...), (1, 2).count(...): immutable receivers
    if cls is types.ModuleType:
        name = getattr(fn, "__name__", "")
        if getattr(owner, "__name__", "") == "builtins":
            if name in PURE_BUILTINS:
                return False
            if name in ("setattr", "delattr", "exec", "eval", "next", "__import__"):
                return ANY_WRITE
            return ANY_READ  # len, sorted, sum, min, getattr ... read their arguments
        return ANY_WRITE
    if cls in CONTAINERS:
        return (ITEMS, getattr(fn, "__name__", "") not in READ_METHODS)
    return ANY_WRITE


def call_type_footprint(value: object) -> FootprintT | bool:
    """Footprint of calling ``value`` found by name: only builtin types need a switch point."""
    if isinstance(value, type) and value.__module__ == "builtins" and value not in DATA_TYPES:
        return ANY_READ
    if isinstance(value, type) and value in (tuple, frozenset):
        return ANY_READ
    return False


def describe_callable(fn: Callable[..., object] | Any) -> str:
    """Return a short name for a called function, such as ``list.pop``."""
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)
