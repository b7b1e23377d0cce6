"""The docs site (mkdocs.yml, docs/) against the code: every config field of every recipe on its recipe page, the
public API in the API reference, a short README that keeps the two commands, and every results figure a benchmark's
own PNG with the command that reproduces it beside it.

The generated parts come from scripts/docs_reference.py (the mkdocs hook), called here directly: none of these
tests needs mkdocs, except the full strict build at the end, which skips when mkdocs is not installed (CI installs
it after the tests and builds the site itself).
"""

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import docs_reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
COMMAND_FENCE = re.compile(r"^```(bash|shell)\s*$", re.MULTILINE)
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def rendered_page(recipe: str) -> str:
    """The recipe's page as mkdocs renders it: its markers expanded by the hook."""
    return docs_reference.expand((ROOT / docs_reference.RECIPE_PAGES[recipe]).read_text())


# --- Config fields --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("recipe", list(docs_reference.RECIPES))
def test_every_config_field_of_the_recipe_is_on_its_page(recipe):
    source = (ROOT / docs_reference.RECIPE_PAGES[recipe]).read_text()
    assert f"<!-- config-fields: {recipe} -->" in source, f"{docs_reference.RECIPE_PAGES[recipe]} lost its marker"
    missing = docs_reference.missing_fields(recipe, rendered_page(recipe))
    assert not missing, f"fields missing from {docs_reference.RECIPE_PAGES[recipe]}: {missing}"


def test_the_recipes_parse_the_dataclasses_the_pages_document():
    """The classes come from each recipe's own parse_args, so a dataclass added to a recipe is documented too."""
    names = {recipe: [cls.__name__ for cls in docs_reference.argument_classes(recipe)]
             for recipe in docs_reference.RECIPES}
    assert names == {
        "grpo": ["ScriptArguments", "MultiObjectiveGRPOConfig", "ModelConfig"],
        "dpo": ["ScriptArguments", "MultiObjectiveDPOConfig", "ModelConfig"],
        "reward_model": ["RewardDataArguments", "MultiHeadRewardConfig", "ModelConfig"],
        "orchestrator": ["OrchestratorArguments"],
    }


def test_a_field_left_off_a_page_is_reported():
    """The coverage check is not vacuous: drop one field's row and it is named."""
    page = rendered_page("grpo")
    without = "\n".join(line for line in page.splitlines() if not line.lstrip().startswith("| `scalarization` |"))
    assert docs_reference.missing_fields("grpo", without) == {"MultiObjectiveGRPOConfig": ["scalarization"]}


@pytest.mark.parametrize("recipe", list(docs_reference.RECIPES))
def test_every_field_of_ours_has_a_help_string(recipe):
    """The pages print the help strings: a field of this project without one would show an empty cell."""
    silent = [f"{cls.__name__}.{field.name}" for cls in docs_reference.argument_classes(recipe)
              for field in dataclasses.fields(cls)
              if docs_reference.is_ours(docs_reference.defining_class(cls, field.name))
              and not field.metadata.get("help", "").strip()]
    assert not silent, f"fields without a help string: {silent}"


def test_fields_of_ours_come_first_and_inherited_ones_are_collapsed():
    page = docs_reference.render_class(docs_reference.argument_classes("reward_model")[1])  # MultiHeadRewardConfig
    ours, _, inherited = page.partition('??? note "Inherited from transformers `TrainingArguments`')
    assert "\n| `encoder_pooling` |" in ours and "\n| `head_loss_balance` |" in ours
    assert "\n    | `output_dir` |" in inherited  # indented: inside the collapsed block
    # ours, replacing transformers' field of the same name: listed with ours, and said so
    assert "\n| `learning_rate` |" in ours and "`learning_rate` (transformers `TrainingArguments`)" in ours


def test_help_strings_cannot_break_a_table_row():
    @dataclasses.dataclass
    class Sample:
        choice: str = dataclasses.field(default="a|b", metadata={"help": "One of a | b; `x|y` stays code; <b>, *s*."})

    table = docs_reference.field_table(dataclasses.fields(Sample))
    row = table.splitlines()[-1]
    assert row == ("| `choice` | `str` | `'a|b'` | One of a \\| b; `x|y` stays code; &lt;b&gt;, \\*s\\*. |")


# --- API reference --------------------------------------------------------------------------------------------------

def test_the_api_reference_covers_every_public_module():
    markers = set()
    for page in sorted((DOCS / "reference").glob("*.md")):
        markers.update(docs_reference.API_MARKER.findall(page.read_text()))
    public = docs_reference.public_modules()
    uncovered = [module for module in public
                 if not any(module == prefix or module.startswith(prefix + ".") for prefix in markers)]
    assert not uncovered, f"public modules in no api-reference marker of docs/reference/: {uncovered}"
    for prefix in markers:  # each marker expands to mkdocstrings blocks listing the public names
        block = docs_reference.render_api(prefix)
        for module, names in public.items():
            if module == prefix or module.startswith(prefix + "."):
                assert f"::: {module}\n" in block and all(f"- {name}\n" in block for name in names)


# --- README ---------------------------------------------------------------------------------------------------------

def test_the_readme_is_short_and_keeps_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the details belong in docs/"
    assert "bash scripts/setup.sh && accelerate launch recipes/grpo.py" in lines
    assert "bash scripts/setup.sh test && python -m pytest -q" in lines


def test_readme_links_into_the_docs_resolve():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(((?:docs/)[^)#]+)(?:#[^)]*)?\)", readme)
    assert targets
    assert [t for t in targets if not (ROOT / t).exists()] == []


# --- Results figures ------------------------------------------------------------------------------------------------

def sections(markdown: str) -> list[str]:
    """The text under each heading (any level), code fences kept whole."""
    parts, current, fenced = [], [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if line.startswith("#") and not fenced and current:
            parts.append("\n".join(current))
            current = []
        current.append(line)
    parts.append("\n".join(current))
    return parts


RESULT_PAGES = sorted((DOCS / "results").glob("*.md"))


@pytest.mark.parametrize("page", RESULT_PAGES, ids=lambda path: path.name)
def test_every_results_figure_has_its_command_beside_it(page):
    for section in sections(page.read_text()):
        if IMAGE.search(section):
            title = section.splitlines()[0]
            assert COMMAND_FENCE.search(section), f"{page.name}, '{title}': a figure without the command beside it"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_results_figures_are_the_benchmarks_own_pngs():
    """Every picture on the results pages is a copy of a PNG a benchmark or recipe wrote (no hand-drawn figures),
    every copy is shown somewhere, and every picture a page shows exists."""
    written = {_digest(path) for path in (ROOT / "benchmarks" / "results").rglob("*.png")}
    copies = sorted((DOCS / "results" / "img").glob("*"))
    assert copies and all(path.suffix == ".png" and _digest(path) in written for path in copies), \
        [path.name for path in copies if path.suffix != ".png" or _digest(path) not in written]
    shown = {(page.parent / target).resolve() for page in RESULT_PAGES for target in IMAGE.findall(page.read_text())}
    assert {path.resolve() for path in copies} == shown


# --- The site itself ------------------------------------------------------------------------------------------------

def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs tools are not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings", reason="the docs tools are not installed (pip install -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (tmp_path / "recipes" / "grpo" / "index.html").exists()
