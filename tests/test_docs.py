"""Every example in README.md and docs/*.md runs as written.

Each ```python and ```bash block runs in a fresh process, and so does each `$ ` command
of a transcript block (a bare ``` block that shows a command and its output); the blocks
of one page run in order in one working folder, where `ffstream record --cameras 1 --episodes 1` has made
`recordings/` first (the examples that read videos read those). A block may be left
out only with a visible reason: a `<!-- docs-test: skip, REASON -->` line just above it
(installing LeRobot, a robot, the suite itself)."""

from __future__ import annotations

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
    r"(?P<marker><!-- docs-test: skip, [^>]+ -->\n)?```(?P<lang>python|bash|)\n(?P<code>.*?)```",
    re.S,
)


def _blocks(page: Path) -> list[tuple[str, str, bool]]:
    """(language, code, skipped) of every example of a page; a transcript block becomes
    the bash of its `$ ` lines (or is no example, when it has none)."""
    found = []
    for m in BLOCK.finditer(page.read_text()):
        lang, code = m["lang"], m["code"]
        if not lang:
            commands = [line[2:] for line in code.splitlines() if line.startswith("$ ")]
            if not commands:
                continue
            lang, code = "bash", "\n".join(commands) + "\n"
        found.append((lang, code, bool(m["marker"])))
    return found


RUNNABLE = [p for p in PAGES if any(not skipped for *_, skipped in _blocks(p))]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("docs")
    argv = [sys.executable, "-m", "ffstream", "record", "--cameras", "1", "--episodes", "1"]
    argv += ["--seconds", "0.5", "--vcodec", "libx264", "--out", "recordings", "--quiet"]
    subprocess.run(argv, cwd=base, check=True, capture_output=True, timeout=120)
    return base / "recordings"


def test_every_page_has_its_examples_found():
    counted = {p.name: len(_blocks(p)) for p in PAGES}
    assert counted["README.md"] >= 3 and counted["usage.md"] >= 4, counted
    assert {"README.md", "usage.md", "depth.md", "scale-out.md", "hardware.md"} <= {
        p.name for p in RUNNABLE
    }


@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_the_examples_of_a_page_run_as_written(page, recordings, tmp_path):
    blocks = [(lang, code) for lang, code, skipped in _blocks(page) if not skipped]
    shutil.copytree(recordings, tmp_path / "recordings")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for lang, code in blocks:
        argv = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail"]
        run = subprocess.run(
            argv,
            input=None if lang == "python" else code,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, f"{page.name}:\n{code}\n--- stderr:\n{run.stderr[-3000:]}"
