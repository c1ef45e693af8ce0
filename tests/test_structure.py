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
        "import ffstream, ffstream.cli, ffstream.lerobot\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# The parts of the package, lowest first. A module may import its own part and the
# parts below it, never one above: capture and inspection never reach into the dataset
# tools, the file formats and the ffmpeg layer know nothing of what uses them.
LAYERS: dict[str, set[str]] = {
    "foundations": {
        "_version", "at_exit", "codecs", "cores", "depth", "errors", "files",
        "files.episode_json", "files.lerobot_layout", "files.png", "files.transcode_json",
        "formats", "frames", "jsonfile", "monitor", "pace", "ring", "safe_options",
        "untrusted", "verdict",
        "cameras", "cameras.base", "cameras.opencv", "cameras.realsense",
        "cameras.synthetic",
    },
    "ffmpeg": {
        "capture_thread", "command", "config", "contention", "ffmpeg", "frozen", "priority",
        "process", "reader", "readers", "remux", "result", "stats", "stream_settings",
    },
    "encoder choice": {"probe"},
    "capture": {"batch", "episode", "recorder", "streaming", "writer", "writer_thread"},
    "machine": {"bench", "benchfile", "capacity"},
    "inspection": {"health", "report", "verify"},
    "datasets": {
        "lerobot", "transcode", "transcode.executors", "transcode.guard", "transcode.job",
        "transcode.manifest", "transcode.records", "transcode.run",
    },
    "interface": {
        "", "__main__", "cli", "cli.common", "cli.machine", "cli.record", "cli.report",
        "cli.transcode", "cli.verify",
    },
}  # fmt: skip


def _layer_of() -> dict[str, int]:
    return {
        f"ffstream.{m}".rstrip("."): rank for rank, mods in enumerate(LAYERS.values()) for m in mods
    }


def test_every_module_belongs_to_one_part():
    placed = _layer_of()
    names = [m for mods in LAYERS.values() for m in mods]
    assert len(names) == len(set(names)), "a module is in two parts"
    assert sorted(set(_graph()) - set(placed)) == [], "place the new module in LAYERS"
    assert sorted(set(placed) - set(_graph())) == [], "LAYERS names a module that is gone"


def test_imports_point_down_the_parts():
    placed, parts = _layer_of(), list(LAYERS)
    upward = [
        f"{m} ({parts[placed[m]]}) imports {d} ({parts[placed[d]]})"
        for m, deps in _graph().items()
        for d in deps - {"ffstream"}  # `from . import x` names the package, then x
        if placed[d] > placed[m]
    ]
    assert not upward, upward
