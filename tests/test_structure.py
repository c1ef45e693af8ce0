"""The shape of the package: layers without import cycles, imports at the top."""

import ast
from pathlib import Path

import pytest

import ffstream

PACKAGE = Path(ffstream.__file__).parent
OPTIONAL = {
    "cv2",
    "pyrealsense2",
    "matplotlib",
    "imageio_ffmpeg",
    "ray",
    "av",
    "torchcodec",
    "pyarrow",
    "rerun",
    "PIL",
}  # imported where used


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def _target(module: str, node: ast.ImportFrom, is_package: bool) -> list[str]:
    if node.level:
        base = module.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    if not prefix.startswith("ffstream"):
        return []
    # `from . import x` may name a submodule
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names]


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, tree in mods.items():
        is_package = (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()
        for node in tree.body:  # module level only
            if isinstance(node, ast.ImportFrom):
                graph[name] |= {t for t in _target(name, node, is_package) if t in mods}
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in mods}
        graph[name].discard(name)
    return graph


@pytest.mark.fast
def test_no_import_cycle_among_ffstream_modules():
    graph = _graph()
    # the package's __init__ re-exports everything; cycles through it are not layering
    graph = {m: {d for d in deps if d != "ffstream"} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


@pytest.mark.fast
def test_imports_inside_functions_are_optional_dependencies_only():
    found = []
    for name, tree in _modules().items():
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    roots = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    roots = {"ffstream"} if node.level else {(node.module or "").split(".")[0]}
                else:
                    continue
                if roots - OPTIONAL:
                    found.append(f"{name}.{fn.name}: {ast.unparse(node)}")
    assert not found, found


@pytest.mark.fast
def test_importing_ffstream_needs_no_optional_dependency():
    import subprocess
    import sys

    code = (
        "import sys, builtins\n"
        f"blocked = {sorted(OPTIONAL | {'ray', 'lerobot', 'torch'})!r}\n"
        "real = builtins.__import__\n"
        "def guard(name, globals=None, locals=None, fromlist=(), level=0):\n"
        "    if level == 0 and name.split('.')[0] in blocked: raise ImportError(name)\n"
        "    return real(name, globals, locals, fromlist, level)\n"
        "builtins.__import__ = guard\n"
        "import ffstream, ffstream._cli, ffstream._datasets.lerobot\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# The parts of the package, lowest first. A module may import its own part and the
# parts below it, never one above: capture and inspection never reach into the dataset
# tools, the file formats and the ffmpeg layer know nothing of what uses them. A folder
# is one part (every module in it belongs there); the top-level modules are named.
LAYERS: dict[str, set[str]] = {
    "foundations": {
        "_version", "_at_exit", "_cores", "_depth", "errors", "_formats", "_jsonfile",
        "_monitor", "_untrusted", "_verdict", "_files", "cameras",
    },
    "running ffmpeg": {"_contention", "_ffmpeg", "_priority", "_process"},
    "codec": {"_codec"},
    "capture": {"_capture"},
    "view": {"_view"},
    "machine": {"_machine"},
    "inspection": {"_inspection"},
    "datasets": {"_datasets"},
    "interface": {"", "__main__", "_cli", "lerobot"},
}  # fmt: skip
PUBLIC_MODULES = {"ffstream", "ffstream.errors", "ffstream.cameras", "ffstream.lerobot"}


def _layer_of() -> dict[str, int]:
    """Each module's part: its top-level name (a module, or the folder it is in)."""
    rank = {f"ffstream.{m}".rstrip("."): r for r, mods in enumerate(LAYERS.values()) for m in mods}
    placed = {}
    for module in _graph():
        top = ".".join(module.split(".")[:2])
        if top in rank:
            placed[module] = rank[top]
    return placed


@pytest.mark.fast
def test_every_module_belongs_to_one_part():
    names = [m for mods in LAYERS.values() for m in mods]
    assert len(names) == len(set(names)), "a module is in two parts"
    assert sorted(set(_graph()) - set(_layer_of())) == [], "place the new module in LAYERS"
    tops = {".".join(m.split(".")[:2]) for m in _graph()}
    gone = {f"ffstream.{m}".rstrip(".") for mods in LAYERS.values() for m in mods} - tops
    assert sorted(gone) == [], "LAYERS names a module that is gone"


@pytest.mark.fast
def test_imports_point_down_the_parts():
    placed, parts = _layer_of(), list(LAYERS)
    upward = [
        f"{m} ({parts[placed[m]]}) imports {d} ({parts[placed[d]]})"
        for m, deps in _graph().items()
        for d in deps - {"ffstream"}  # `from . import x` names the package, then x
        if placed[d] > placed[m]
    ]
    assert not upward, upward


@pytest.mark.fast
def test_folders_hold_their_parts_and_nothing_else_is_flat():
    top = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    named = {m for mods in LAYERS.values() for m in mods} | {"__init__"}
    assert top - named == set(), "a new top-level module: put it in a part's folder"


@pytest.mark.fast
def test_only_the_documented_modules_are_public():
    """A module a user may import has a name without an underscore at every level; every
    other module is internal. A new public module is a decision: add it here and to the
    README."""
    public = {m for m in _graph() if not any(part.startswith("_") for part in m.split("."))}
    assert public == PUBLIC_MODULES


@pytest.mark.fast
def test_no_module_replaces_itself_in_sys_modules():
    found = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if isinstance(target, ast.Subscript) and "sys.modules" in ast.unparse(target):
                    found.append(name)
    assert not found, found


@pytest.mark.fast
def test_the_public_face_is_small_and_every_name_is_documented():
    """What `import ffstream` offers: at most 40 names, each in __all__ and each named in
    the README or a page of docs/."""
    public = sorted(n for n in dir(ffstream) if not n.startswith("_"))
    assert len(public) <= 40, public
    assert set(public) == set(ffstream.__all__) - {"__version__"}
    root = PACKAGE.parent
    text = "\n".join(p.read_text() for p in [root / "README.md", *sorted(root.glob("docs/*.md"))])
    undocumented = [n for n in public if not _named(n, text)]
    assert undocumented == [], undocumented


def _named(name: str, text: str) -> bool:
    import re

    return re.search(rf"`[^`]*\b{re.escape(name)}\b[^`]*`", text) is not None


@pytest.mark.fast
def test_every_error_lives_in_ffstream_errors():
    """An exception a user may catch is defined once, in ffstream.errors, and derives
    from FFstreamError; ffstream.FFstreamError catches them all."""
    import ffstream.errors as errors

    outside = [
        f"{name}.{node.name}"
        for name, tree in _modules().items()
        if name != "ffstream.errors"
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any("Error" in ast.unparse(b) or "Exception" in ast.unparse(b) for b in node.bases)
        and not node.name.startswith("_")
    ]
    assert outside == ["ffstream._untrusted.NotRegularFileError"], outside  # never leaves
    for value in vars(errors).values():
        if (
            isinstance(value, type)
            and issubclass(value, Exception)
            and value.__module__ == errors.__name__
        ):
            assert issubclass(value, ffstream.FFstreamError), value
    assert ffstream.FFstreamError is errors.FFstreamError


@pytest.mark.fast
def test_the_names_other_projects_use_keep_working():
    """The imports code outside this repository relies on, exactly as it writes them."""
    import ffstream.lerobot
    from ffstream import (  # noqa: F401
        DepthEncoderConfig,
        EncoderConfig,
        FFmpegWriter,
        StreamingVideoEncoder,
        find_ffmpeg,
        probe_encoders,
        read_frames,
        select_encoder,
    )
    from ffstream.cameras import SyntheticCamera, read_stamp, stamp_index  # noqa: F401

    assert issubclass(ffstream.errors.EncoderError, ffstream.FFstreamError)
    assert callable(ffstream.lerobot.install) and callable(ffstream.lerobot.uninstall)
    assert callable(ffstream.verify) and callable(ffstream.transcode)
    kept = StreamingVideoEncoder(
        30, queue_maxsize=5, encoder_threads=1, compute_stats=True, overwrite=True,
        drop_policy="block",
    )  # fmt: skip
    assert (kept.queue_maxsize, kept.encoder_threads, kept.mode) == (5, 1, "offline")
    assert kept.settings.compute_stats and kept.settings.overwrite
    kept.close()
