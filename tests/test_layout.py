"""The folders are layers, and imports point one way: down the pipeline, never up.

    objectives, pareto, plots, cache, redaction  <  data  <  models  <  hub  <  reward_models  <  trainers, steering,
    orchestrator, evaluation  <  cli (recipe plumbing)  <  console (the `moalign` command)

A module may import from its own layer or a lower one. `reward_models` builds on the `alignment` core, and only
the layers above it import `reward_models`. The multi-objective core (objectives, pareto) loads no model library
(transformers, TRL, peft, accelerate, datasets): only torch and numerical libraries. Every import statement counts,
including those inside functions.

The house rules besides: the modules import each other without a cycle; a project import sits at the top of its
module unless a comment beside it (same line or the line above) says why it must wait; no source file grows past
450 lines.
"""

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

import alignment

ROOT = Path(__file__).resolve().parents[1]
LAYER = {
    "alignment.objectives": 0, "alignment.pareto": 0, "alignment.plots": 0, "alignment.cache": 0,
    "alignment.redaction": 0,
    "alignment.data": 1,
    "alignment.models": 2,
    "alignment.hub": 3,
    "reward_models": 4,
    "alignment.trainers": 5, "alignment.steering": 5, "alignment.orchestrator": 5, "alignment.evaluation": 5,
    "alignment.cli": 6,
    "alignment.console": 7,
}


def layer_of(module: str) -> tuple[str, int] | None:
    for prefix in sorted(LAYER, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYER[prefix]
    return None


def imports_of(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def modules():
    for package in ("alignment", "reward_models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__init__.py" and path.parent.name == "alignment":
                continue  # the top-level package re-exports the public API of every layer (lazily)
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield path, dotted


def test_every_module_belongs_to_a_layer():
    assert [dotted for _, dotted in modules() if layer_of(dotted) is None] == []


def test_imports_never_point_up_a_layer():
    upward = []
    for path, dotted in modules():
        own_prefix, own = layer_of(dotted)
        for imported in imports_of(path):
            target = layer_of(imported)
            if target and target[1] > own:
                upward.append(f"{dotted} (layer {own}) imports {imported} (layer {target[1]})")
    assert upward == []


def test_the_multi_objective_core_loads_no_model_library():
    model_libraries = {"transformers", "trl", "peft", "accelerate", "datasets", "deepspeed", "huggingface_hub"}
    loaded = []
    for path, dotted in modules():
        if layer_of(dotted)[0] in ("alignment.objectives", "alignment.pareto"):
            loaded += [f"{dotted} imports {m}" for m in imports_of(path) if m.split(".")[0] in model_libraries]
    assert loaded == []


def test_the_public_api_is_importable_from_the_top_level():
    from alignment import MultiObjectiveGRPOTrainer, load_steerable, parse_preference_weights

    assert callable(load_steerable) and callable(parse_preference_weights)
    assert MultiObjectiveGRPOTrainer.__module__ == "alignment.trainers.grpo"

    missing = [name for name in alignment.__all__ if getattr(alignment, name, None) is None]
    assert missing == []
    assert {"load_steerable", "MultiObjectiveGRPOTrainer", "MultiObjectiveDPOTrainer", "scalarize",
            "PreferenceOrchestrator", "hypervolume"} <= set(alignment.__all__)


# --- No import cycles ---------------------------------------------------------------------------------------------


def project_modules() -> dict[str, Path]:
    """Every module of the two packages by dotted name, the top-level `alignment` package included."""
    found = {}
    for package in ("alignment", "reward_models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            found[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return found


def imported_modules(path: Path, dotted: str, known) -> set[str]:
    """The project modules `path` imports, from every import statement (those inside functions too).

    `from alignment.x import y` is the module `alignment.x.y` when that is a module, else `alignment.x`; `import
    alignment.x.y` is `alignment.x.y`. Relative imports are resolved against the module's package.
    """
    package = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in candidates:
            while name and name not in known:  # `import alignment.x.y` of a name below a module: its module
                name = name.rpartition(".")[0]
            if name:
                targets.add(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    known = project_modules()
    return {dotted: imported_modules(path, dotted, known) for dotted, path in known.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> ... -> a) per group of modules that import each other, directly or not (Tarjan's SCCs)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def connect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    cycles = []
    for group in groups:  # the shortest way round from the group's first module back to itself
        start = min(group)
        paths, seen = [[start]], set()
        while paths:
            path = paths.pop(0)
            targets = sorted(t for t in graph[path[-1]] if t in group)
            if start in targets:
                cycles.append(path + [start])
                break
            for target in targets:
                if target not in seen:
                    seen.add(target)
                    paths.append(path + [target])
    return sorted(cycles)


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]
    assert import_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_import_graph_reads_every_import_statement(tmp_path):
    known = {"alignment", "alignment.models", "alignment.models.packaged", "alignment.data", "alignment.data.jsonl",
             "alignment.hub", "alignment.hub.record", "alignment.hub.steerable"}
    source = tmp_path / "steerable.py"
    source.write_text("import json\n"
                      "from alignment.models import packaged\n"  # a module: that module
                      "def f():\n"
                      "    from alignment.data import resolve_data\n"  # a name: its module
                      "    import alignment.data.jsonl\n"
                      "    from .record import RECORD_FILE\n")
    assert imported_modules(source, "alignment.hub.steerable", known) == {
        "alignment.models.packaged", "alignment.data", "alignment.data.jsonl", "alignment.hub.record"}


def test_modules_import_each_other_without_a_cycle():
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


# --- Project imports at the top of the module ---------------------------------------------------------------------

SCANNED_FOLDERS = ("alignment", "reward_models", "recipes", "scripts")
# recipes/ and scripts/ are folders on sys.path too: `from reward_model import main` is a project import
PROJECT_NAMES = {"alignment", "reward_models", "recipes", "scripts", "benchmarks", "tests"} | {
    path.stem for folder in ("recipes", "scripts") for path in (ROOT / folder).glob("*.py")}
DIRECTIVE = re.compile(r"\b(noqa(:\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*)?|type:\s*ignore(\[[^\]]*\])?|isort:\s*\w+)")


def scanned_files() -> list[Path]:
    return [path for folder in SCANNED_FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))
            if "__pycache__" not in path.parts]


def comment_lines(source: str) -> tuple[set[int], set[int]]:
    """(lines with a comment that says something besides linter directives, lines that hold only a comment)."""
    explained, code_lines = set(), set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            if DIRECTIVE.sub("", token.string.lstrip("#")).strip(" \t:;,-()"):
                explained.add(token.start[0])
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.update(range(token.start[0], token.end[0] + 1))
    return explained, explained - code_lines


def is_project_import(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in PROJECT_NAMES
    return any(alias.name.split(".")[0] in PROJECT_NAMES for alias in node.names)


def unexplained_lazy_imports(path: Path) -> list[int]:
    """The lines of the project imports made inside a function with no comment saying why (on the statement's
    lines, or a comment line right above it)."""
    source = path.read_text()
    explained, comment_only = comment_lines(source)
    found = set()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and is_project_import(node):
                if not explained.intersection(range(node.lineno, node.end_lineno + 1)) and \
                        node.lineno - 1 not in comment_only:
                    found.add(node.lineno)
    return sorted(found)


def test_the_lazy_import_check_wants_a_reason(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n"
        "    from alignment.cache import build_once\n"  # 2: no reason
        "    # lazy: it imports torch, which naming a model never needs\n"
        "    from alignment.models.tiny_policy import build_tiny_policy\n"  # 4: the line above says why
        "    from alignment.models import packaged  # lazy: it imports this module back\n"  # 5: same line
        "    import json\n"  # 6: not a project import
        "    from reward_model import main  # noqa: E402\n"  # 7: a recipe on sys.path; a directive is no reason
        "    from alignment.data import (  # lazy: a reason on the statement's first line\n"
        "        resolve_data,\n"
        "    )\n"
        "    x = 1  # a comment on code\n"
        "    from .sibling import thing\n"  # 12: relative; the line above is code, not a comment
        "from alignment.pareto import hypervolume\n"  # module level: fine
    )
    assert unexplained_lazy_imports(sample) == [2, 7, 12]


@pytest.mark.parametrize("path", scanned_files(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_project_imports_inside_functions_say_why(path):
    """Each file on its own, so that a file still being refactored fails alone and names its lines."""
    name = path.relative_to(ROOT).as_posix()
    unexplained = [f"{name}:{line}" for line in unexplained_lazy_imports(path)]
    assert not unexplained, ("project imports inside functions without a comment saying why (move them to the top "
                             "of the module, or say why they must wait):\n" + "\n".join(unexplained))


# --- File length ---------------------------------------------------------------------------------------------------

MAX_LINES = 450


def text_files(*folders: str) -> list[Path]:
    """The text files under `folders` (the packaged data are gzip files: binary, no lines to count)."""
    files = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            data = path.read_bytes()
            if b"\0" in data:
                continue
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            files.append(path)
    return files


def test_the_length_check_sees_code_and_configs():
    files = text_files("alignment", "reward_models", "recipes")
    assert ROOT / "alignment" / "models" / "packaged.py" in files
    assert any(path.suffix == ".yaml" for path in files) and not any(path.suffix == ".gz" for path in files)


@pytest.mark.parametrize("path", text_files("alignment", "reward_models", "recipes"),
                         ids=lambda path: path.relative_to(ROOT).as_posix())
def test_no_file_is_longer_than_450_lines(path):
    count = len(path.read_text().splitlines())
    assert count <= MAX_LINES, f"{path.relative_to(ROOT).as_posix()}: {count} lines, more than {MAX_LINES}; split it"
