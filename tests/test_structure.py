"""The shape of the package: layers without import cycles, imports at the top."""

import ast
from pathlib import Path

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
        "import ffstream, ffstream.cli, ffstream.datasets.lerobot\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# The parts of the package, lowest first. A module may import its own part and the
# parts below it, never one above: capture and inspection never reach into the dataset
# tools, the file formats and the ffmpeg layer know nothing of what uses them. A folder
# is one part (every module in it belongs there); the top-level modules are named.
# The old import paths (DESIGN.md), each the very module of its part under its old name.
LEGACY = {  # the old name -> the module it is now
    "batch": "capture.batch", "capacity": "machine.capacity", "config": "codec.config",
    "lerobot": "datasets.lerobot", "reader": "codec.reader", "report": "inspection.report",
    "stats": "capture.stats", "transcode": "datasets.transcode", "verify": "inspection.judge",
}  # fmt: skip
LAYERS: dict[str, set[str]] = {
    "foundations": {
        "_version", "at_exit", "cores", "depth", "errors", "formats", "jsonfile",
        "monitor", "untrusted", "verdict", "files", "cameras",
    },
    "running ffmpeg": {"contention", "ffmpeg", "priority", "process"},
    "codec": {"codec"},
    "capture": {"capture"},
    "machine": {"machine"},
    "inspection": {"inspection"},
    "datasets": {"datasets"},
    "interface": {"", "__main__", "cli", *LEGACY},
}  # fmt: skip


def _layer_of() -> dict[str, int]:
    """Each module's part: its top-level name (a module, or the folder it is in)."""
    rank = {f"ffstream.{m}".rstrip("."): r for r, mods in enumerate(LAYERS.values()) for m in mods}
    placed = {}
    for module in _graph():
        top = ".".join(module.split(".")[:2])
        if top in rank:
            placed[module] = rank[top]
    return placed


def test_every_module_belongs_to_one_part():
    names = [m for mods in LAYERS.values() for m in mods]
    assert len(names) == len(set(names)), "a module is in two parts"
    assert sorted(set(_graph()) - set(_layer_of())) == [], "place the new module in LAYERS"
    tops = {".".join(m.split(".")[:2]) for m in _graph()}
    gone = {f"ffstream.{m}".rstrip(".") for mods in LAYERS.values() for m in mods} - tops
    assert sorted(gone) == [], "LAYERS names a module that is gone"


def test_imports_point_down_the_parts():
    placed, parts = _layer_of(), list(LAYERS)
    upward = [
        f"{m} ({parts[placed[m]]}) imports {d} ({parts[placed[d]]})"
        for m, deps in _graph().items()
        for d in deps - {"ffstream"}  # `from . import x` names the package, then x
        if placed[d] > placed[m]
    ]
    assert not upward, upward


def test_folders_hold_their_parts_and_nothing_else_is_flat():
    top = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    named = {m for mods in LAYERS.values() for m in mods} | {"__init__"}
    assert top - named == set(), "a new top-level module: put it in a part's folder"


def test_the_old_import_paths_are_the_modules_of_their_parts():
    """Code outside ffstream imports the old paths (DESIGN.md); they must be the very
    modules, so that a monkeypatch through either name reaches the code, and importing
    `ffstream.verify` must not take the name of the function `ffstream.verify`."""
    import subprocess
    import sys

    code = (
        "import importlib, sys\n"
        "import ffstream\n"
        f"for old, part in {LEGACY!r}.items():\n"
        "    legacy = importlib.import_module(f'ffstream.{old}')\n"
        "    home = importlib.import_module(f'ffstream.{part}')\n"
        "    assert legacy is home, old\n"
        "import ffstream.verify\n"
        "from ffstream.verify import verify\n"
        "assert callable(ffstream.verify) and ffstream.verify is verify, ffstream.verify\n"
        "from ffstream.batch import BatchVideoEncoder, encode_png\n"
        "from ffstream.config import CODECS, GENERIC_OPTIONS\n"
        "from ffstream.reader import video_info\n"
        "from ffstream.report import write_report\n"
        "from ffstream.lerobot import install\n"
        "from ffstream.transcode import transcode\n"
        "from ffstream.capacity import plan\n"
        "from ffstream.stats import aggregate_stats\n"
        "from ffstream.cameras.synthetic import SyntheticCamera, stamp_index, read_stamp\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
