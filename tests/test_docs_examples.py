"""The docs' examples, ``examples/*.py`` and a user's view of the API pass ``mypy --strict``.

Which ``python`` blocks of README.md and docs/**/*.md are checked:

* a block that imports taskkit (``import taskkit`` or ``from taskkit...`` at the start of a
  line) is a complete program, checked on its own;
* a block preceded by ``<!-- typecheck: continues -->`` continues the block before it on the
  same page (a tutorial that builds one program step by step): the two are checked as one
  program, which is checked if any of its blocks imports taskkit;
* a block preceded by ``<!-- no-typecheck: REASON -->`` is a deliberate fragment and is
  skipped; keep these rare;
* any other block (a fragment that does not import taskkit) is prose and is not checked.

mypy runs once, in this process, over every program together (the ``mypy_errors`` fixture).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TYPECHECK = sorted((ROOT / "tests" / "typecheck").glob("*.py"))

_BLOCK = re.compile(
    r"^(?:<!-- *(?P<marker>[^>]*?) *-->\n+)?```python\n(?P<body>.*?)^```", re.M | re.S
)
_IMPORTS_TASKKIT = re.compile(r"^(?:import taskkit|from taskkit[. ])", re.M)


@dataclass
class Program:
    name: str  # a module name: page path and first line, e.g. docs_testing_L17
    source: str


def doc_programs() -> list[Program]:
    """Every program the rules in this module's docstring pick from the pages."""
    programs: list[Program] = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        stem = re.sub(r"\W", "_", str(page.relative_to(ROOT).with_suffix("")))
        chains: list[tuple[int, list[str]]] = []  # (first line, bodies), one per program
        for block in _BLOCK.finditer(text):
            marker = (block["marker"] or "").strip()
            line = text.count("\n", 0, block.start("body"))
            if marker.startswith("no-typecheck"):
                continue
            if marker == "typecheck: continues":
                assert chains, f"{page.name}:{line}: 'continues' needs a block before it"
                chains[-1][1].append(block["body"])
            else:
                assert not marker.startswith("typecheck"), f"{page.name}:{line}: {marker!r}"
                chains.append((line, [block["body"]]))
        for line, bodies in chains:
            source = "\n".join(bodies)
            if _IMPORTS_TASKKIT.search(source):
                programs.append(Program(f"{stem}_L{line}", source))
    return programs


PROGRAMS = doc_programs()


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Run ``mypy --strict`` once over every program; map each file to its error lines.

    A doc program's key is its name (``docs_testing_L7``), a file's its file name (mypy
    replays cached errors with the path they were first reported under).
    taskkit itself is checked by ``mypy --strict src``; here it is what the programs
    import, and where it is on the Python path (as when installed) mypy reports nothing
    inside it, as for any installed package.
    """
    api = pytest.importorskip("mypy.api")
    folder = tmp_path_factory.mktemp("doc_examples")
    files = [str(path) for path in [*EXAMPLES, *TYPECHECK]]
    for program in PROGRAMS:
        path = folder / f"{program.name}.py"
        path.write_text(program.source, encoding="utf-8")
        files.append(str(path))
    keys = {Path(file).name: Path(file).stem for file in files}
    assert len(keys) == len(files), "two checked files have one name"
    # taskkit from this source tree (not whatever copy is installed), with the
    # project's settings for its untyped optional dependencies.
    saved = os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = str(ROOT / "src")
    try:
        stdout, stderr, status = api.run(
            [
                "--strict",
                "--config-file",
                str(ROOT / "pyproject.toml"),
                # The project's cache: a warm one makes this a second instead of ~20 s.
                "--cache-dir",
                str(ROOT / ".mypy_cache"),
                "--no-error-summary",
                "--show-error-codes",
                *files,
            ]
        )
    finally:
        if saved is None:
            del os.environ["MYPYPATH"]
        else:
            os.environ["MYPYPATH"] = saved
    assert status in (0, 1), stderr  # 2: mypy itself failed
    errors: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        key = keys.get(Path(line.split(":", 1)[0]).name)
        if key is not None:
            errors.setdefault(key, []).append(line)
    return errors


def test_the_rules_find_the_guides_programs() -> None:
    names = {program.name for program in PROGRAMS}
    assert any(name.startswith("README_") for name in names)
    # the race-testing tutorial builds one program over several blocks
    assert any("balance = 0" in p.source and "explore" in p.source for p in PROGRAMS)
    assert len(PROGRAMS) >= 10


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("program", PROGRAMS, ids=[program.name for program in PROGRAMS])
def test_doc_example_type_checks(program: Program, mypy_errors: dict[str, list[str]]) -> None:
    found = mypy_errors.get(program.name, [])
    assert not found, "\n".join([*found, "", program.source])


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", EXAMPLES + TYPECHECK, ids=lambda path: path.name)
def test_example_type_checks(path: Path, mypy_errors: dict[str, list[str]]) -> None:
    assert not mypy_errors.get(path.stem)
