"""Every example in README.md and docs/*.md runs as written.

Each ```python and ```bash block runs in a fresh process, and so does each `$ ` command
of a transcript block (a bare ``` block that shows a command and its output); the blocks
of one page run in order in one working folder, where `ffstream record --cameras 1 --episodes 1` has made
`recordings/` first (the examples that read videos read those). A block may be left
out only with a visible reason: a `<!-- docs-test: skip, REASON -->` line just above it
(installing LeRobot, a robot, the suite itself). A block after `<!-- docs-test: needs
MODULE -->` runs where MODULE can be imported (LeRobot's environment), and is reported
as skipped, by name, elsewhere."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(?:(?P<marker><!-- docs-test: skip, [^>]+ -->\n)|<!-- docs-test: needs (?P<needs>\w+) -->\n)?"
    r"```(?P<lang>python|bash|)\n(?P<code>.*?)```",
    re.S,
)


def _examples(page: Path) -> list[tuple[str, str, bool, str | None]]:
    """(language, code, skipped, module it needs) of every example of a page; a
    transcript block becomes the bash of its `$ ` lines (or is no example, when it has
    none)."""
    found = []
    for m in BLOCK.finditer(page.read_text()):
        lang, code = m["lang"], m["code"]
        if not lang:
            commands = [line[2:] for line in code.splitlines() if line.startswith("$ ")]
            if not commands:
                continue
            lang, code = "bash", "\n".join(commands) + "\n"
        found.append((lang, code, bool(m["marker"]), m["needs"]))
    return found


def _blocks(page: Path) -> list[tuple[str, str, bool]]:
    """The examples every environment runs: (language, code, skipped)."""
    return [(lang, code, skipped) for lang, code, skipped, needs in _examples(page) if not needs]


RUNNABLE = [p for p in PAGES if any(not skipped for *_, skipped in _blocks(p))]
NEEDING = [
    pytest.param(page, k, needs, id=f"{page.name}-{k}-{needs}")
    for page in PAGES
    for k, (*_, needs) in enumerate(_examples(page))
    if needs
]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """A healthy recording: the examples that judge one (verify, report) exit 1 on a bad
    one, as documented. A machine busy enough to make a recording lose frames or rows
    gets a second take, and the reason is printed; a second failure fails the suite."""
    base = tmp_path_factory.mktemp("docs")
    argv = [sys.executable, "-m", "ffstream", "record", "--cameras", "1", "--episodes", "1"]
    argv += ["--seconds", "0.5", "--vcodec", "libx264", "--out", "recordings", "--quiet"]
    for attempt in range(2):
        take = subprocess.run(argv, cwd=base, capture_output=True, text=True, timeout=120)
        if take.returncode == 0:
            return base / "recordings"
        print(f"docs recording take {attempt + 1} was not healthy:\n{take.stdout[-2000:]}")
        shutil.rmtree(base / "recordings", ignore_errors=True)
    raise AssertionError(f"no healthy recording in two takes:\n{take.stderr[-3000:]}")


@pytest.mark.fast
def test_every_page_has_its_examples_found():
    counted = {p.name: len(_blocks(p)) for p in PAGES}
    assert counted["README.md"] >= 3 and counted["usage.md"] >= 4, counted
    assert {"README.md", "usage.md", "depth.md", "scale-out.md", "hardware.md"} <= {
        p.name for p in RUNNABLE
    }


def _run(page: Path, lang: str, code: str, cwd: Path, timeout: float) -> None:
    """Run one example as a user would: python -c, or bash with errors fatal."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    argv = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail"]
    run = subprocess.run(
        argv,
        input=None if lang == "python" else code,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, f"{page.name}:\n{code}\n--- stderr:\n{run.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_the_examples_of_a_page_run_as_written(page, recordings, tmp_path):
    shutil.copytree(recordings, tmp_path / "recordings")
    for lang, code, skipped in _blocks(page):
        if not skipped:
            _run(page, lang, code, tmp_path, 300)


@pytest.mark.fast
@pytest.mark.parametrize(("page", "index", "module"), NEEDING)
def test_the_examples_that_need_another_library_run_where_it_is(page, index, module, tmp_path):
    """LeRobot's round trip runs in LeRobot's environment (tools/lerobot-check.sh)."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{page.name} example {index} needs {module}, not installed here")
    lang, code, _, _ = _examples(page)[index]
    _run(page, lang, code, tmp_path, 600)


@pytest.mark.slow
def test_the_python_examples_type_check(tmp_path):
    """Every ```python block, skipped or not, passes mypy against the installed package:
    an import a page shows resolves to what a type checker sees (no module stands in for
    another), and the calls match the signatures."""
    api = pytest.importorskip("mypy.api")
    files = []
    for page in PAGES:
        for k, (lang, code, _, _) in enumerate(_examples(page)):
            if lang == "python":
                files.append(tmp_path / f"{page.stem.replace('-', '_')}_{k}.py")
                files[-1].write_text(code)
    assert len(files) >= 10, files
    tomllib = pytest.importorskip("tomllib")
    untyped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    others = [m for o in untyped for m in o["module"]] + ["lerobot", "lerobot.*", "torch"]
    config = tmp_path / "mypy.ini"  # ffstream must resolve; only other projects may not
    config.write_text(
        f"[mypy]\ncheck_untyped_defs = True\n[mypy-{','.join(others)}]\n"
        "ignore_missing_imports = True\n"
    )
    flags = ["--config-file", str(config), "--cache-dir", str(tmp_path / "cache")]
    flags += ["--no-error-summary"]
    out, err, status = api.run([*flags, *map(str, files)])
    assert status == 0, out + err


@pytest.mark.fast
def test_every_test_a_page_cites_exists():
    """The pages prove their claims by naming tests (`tests/x/test_y.py::test_z`, or
    `::test_z` after a file): each named file and test must exist, so a test that is
    renamed or moved, or a claim whose test is gone, fails here."""
    files = {p.name: p for p in (ROOT / "tests").rglob("test_*.py")}
    cite = re.compile(r"`((?:tests/(?:\w+/)*)?(test_\w+\.py))?(?:::(test_\w+))?[^`]*`")
    missing = []
    for page in PAGES:
        current: Path | None = None
        for m in cite.finditer(page.read_text()):
            path, name, test = m.group(1), m.group(2), m.group(3)
            if path:
                current = (ROOT / path) if path.startswith("tests/") else files.get(name)
                if current is None or not current.exists():
                    missing.append(f"{page.name}: {path}")
                    current = None
                    continue
            if test and current is not None and f"def {test}(" not in current.read_text():
                missing.append(f"{page.name}: {current.relative_to(ROOT)}::{test}")
    assert missing == [], missing


def _anchors(text: str) -> set[str]:
    """The section anchors a Markdown page has (GitHub's rule: lower case, spaces to
    hyphens, punctuation dropped)."""
    found = set()
    for line in text.splitlines():
        if line.startswith("#"):
            title = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower())
            found.add(title.replace(" ", "-"))
    return found


@pytest.mark.fast
def test_every_link_to_a_section_leads_to_one():
    pages = {p.name: p.read_text() for p in PAGES}
    broken = [
        f"{name}: {m.group(0)}"
        for name, text in pages.items()
        for m in re.finditer(r"\]\((?:(?:docs/)?([\w\-]+\.md))?#([\w\-]+)\)", text)
        if m.group(2) not in _anchors(pages.get(m.group(1) or name, ""))
    ]
    assert broken == [], broken
