"""The generated parts of the docs site: every recipe's config fields and the API reference's module list.

mkdocs runs this file as a hook (`hooks:` in mkdocs.yml): before a page's Markdown is rendered, each marker in it is
replaced by what the code says today, so the pages cannot fall behind the dataclasses.

    <!-- config-fields: grpo -->             every field of every argument dataclass the recipe parses
    <!-- api-reference: alignment.objectives -->   a mkdocstrings block per `_PUBLIC_API` module under that prefix

Config fields come from `dataclasses.fields` of the classes each recipe hands to `parse_recipe_args` (captured by
calling the recipe's own `parse_args` with the parser swapped out, so a dataclass added to a recipe shows up here
without an edit): name, type, default and the `help` string of the field's metadata. Fields defined by this project
(`alignment`, `reward_models`, `recipes`) come first, grouped by the class that defines them; fields inherited from
TRL or transformers follow in collapsed sections. Nothing here needs mkdocs: `tests/test_docs.py` calls it directly.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# recipe name (as in the marker) -> the module whose parse_args parses its command line
RECIPES = {
    "grpo": "recipes.grpo",
    "dpo": "recipes.dpo",
    "reward_model": "recipes.reward_model",
    "orchestrator": "recipes.orchestrator",
}
# recipe name -> the docs page that must list every field of its argument dataclasses
RECIPE_PAGES = {
    "grpo": "docs/recipes/grpo.md",
    "dpo": "docs/recipes/dpo.md",
    "reward_model": "docs/recipes/reward-model.md",
    "orchestrator": "docs/recipes/orchestrator.md",
}
OUR_PACKAGES = ("alignment", "reward_models", "recipes")
PACKAGE_NAMES = {"trl": "TRL", "transformers": "transformers"}
CONFIG_MARKER = re.compile(r"^<!-- config-fields: ([\w-]+) -->$", re.MULTILINE)
TRL_FIELDS_MARKER = re.compile(r"^<!-- trl-fields -->$", re.MULTILINE)
API_MARKER = re.compile(r"^<!-- api-reference: ([\w.]+) -->$", re.MULTILINE)
FIELD_ROW = re.compile(r"^\s*\| `([^`]+)` \|", re.MULTILINE)
MAX_DEFAULT_CHARS = 90


def _import(module: str):
    """A project module, with the repository root on the path (`mkdocs` itself does not put it there)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(module)


class _Captured(Exception):
    pass


def argument_classes(recipe: str) -> tuple[type, ...]:
    """The dataclasses the recipe parses its YAML and command line into, in the order it passes them."""
    module = _import(RECIPES[recipe])
    captured: list[type] = []

    def capture(dataclass_types, default_config, argv=None):
        captured.extend(dataclass_types)
        raise _Captured

    original = module.parse_recipe_args
    module.parse_recipe_args = capture
    try:
        module.parse_args([])
    except _Captured:
        pass
    finally:
        module.parse_recipe_args = original
    if not captured:
        raise RuntimeError(f"{RECIPES[recipe]}.parse_args did not call parse_recipe_args")
    return tuple(captured)


def defining_class(cls: type, name: str) -> type:
    """The most derived class of `cls`'s MRO that declares field `name` itself."""
    for klass in cls.__mro__:
        if name in inspect.get_annotations(klass):
            return klass
    return cls


def package_of(klass: type) -> str:
    return klass.__module__.split(".")[0]


def is_ours(klass: type) -> bool:
    return package_of(klass) in OUR_PACKAGES


def _source_path(klass: type) -> str:
    module = sys.modules[klass.__module__]
    try:
        return Path(module.__file__).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return klass.__module__


def _type_text(field: dataclasses.Field) -> str:
    text = field.type if isinstance(field.type, str) else inspect.formatannotation(field.type)
    return text.replace("typing.", "")


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    value = getattr(value, "value", value)  # enum members by their value, as on the command line
    text = repr(value)
    return text if len(text) <= MAX_DEFAULT_CHARS else text[:MAX_DEFAULT_CHARS - 1] + "…"


def _escape_prose(text: str) -> str:
    """Markdown-safe text for a table cell: no cell breaks, emphasis, links or HTML from the help string."""
    for char in "\\|*_[]":
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: str) -> str:
    """A help string for a table cell; its `code` spans stay code."""
    text = " ".join(str(text).split())
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: all of it is prose
        return _escape_prose(text)
    return "".join(_code_cell(part) if i % 2 else _escape_prose(part) for i, part in enumerate(parts))


def _code_cell(text: str) -> str:
    """Inline code in a table cell (Python-Markdown's tables keep a `|` inside a code span in its cell)."""
    return f"`{text}`" if "`" not in text else f"``{text}``"


def field_table(fields: list[dataclasses.Field], indent: str = "") -> str:
    """A Markdown table of fields: name, type, default, help."""
    lines = ["| field | type | default | help |", "|---|---|---|---|"]
    for field in fields:
        lines.append(f"| `{field.name}` | {_code_cell(_type_text(field))} | {_code_cell(_default_text(field))} | "
                     f"{_cell(field.metadata.get('help', '')) or '—'} |")
    return "\n".join(indent + line for line in lines)


def _first_paragraph(klass: type) -> str:
    doc = inspect.getdoc(klass) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _origin_label(klass: type) -> str:
    package = package_of(klass)
    return f"{PACKAGE_NAMES.get(package, package)} `{klass.__name__}`"


def _overridden_label(cls: type, klass: type, name: str) -> str | None:
    """What an own field overrides upstream, e.g. "TRL `GRPOConfig`"; None for a new field."""
    mro = cls.__mro__
    for base in mro[mro.index(klass) + 1:]:
        if not is_ours(base) and name in inspect.get_annotations(base):
            return _origin_label(base)
    return None


def render_class(cls: type, heading_level: int = 3) -> str:
    """One argument dataclass: its own fields by defining class, then its inherited fields, collapsed."""
    groups: dict[type, list[dataclasses.Field]] = {}
    for field in dataclasses.fields(cls):
        groups.setdefault(defining_class(cls, field.name), []).append(field)
    # own class first, then the project's mixins and the upstream bases, most derived first (MRO order)
    ours = [klass for klass in cls.__mro__ if klass in groups and is_ours(klass)]
    theirs = [klass for klass in cls.__mro__ if klass in groups and not is_ours(klass)]
    hashes = "#" * heading_level
    total = sum(len(fields) for fields in groups.values())
    if is_ours(cls):
        title = f"{hashes} `{cls.__name__}` ({_source_path(cls)})"
    else:
        title = f"{hashes} {_origin_label(cls)}"
    out = [title, "", f"{total} fields. {_first_paragraph(cls)}".strip(), ""]
    for klass in ours:
        if klass is not cls or len(ours) > 1:
            origin = "this class" if klass is cls else f"`{klass.__name__}` ({_source_path(klass)})"
            out += [f"**Defined by {origin}** ({len(groups[klass])} fields)", ""]
        out += [field_table(groups[klass]), ""]
        overrides = [(f.name, _overridden_label(cls, klass, f.name)) for f in groups[klass]]
        overrides = [(name, label) for name, label in overrides if label]
        if overrides:
            listed = ", ".join(f"`{name}` ({label})" for name, label in overrides)
            out += [f"Ours, replacing an inherited field of the same name: {listed}.", ""]
    for klass in theirs:
        fields = groups[klass]
        kind = "Inherited from" if is_ours(cls) else "Defined by"
        summary = f"{kind} {_origin_label(klass)}: {len(fields)} fields, {_origin_meaning(klass)}"
        out += [f'??? note "{summary}"', "", field_table(fields, indent="    "), ""]
    return "\n".join(out)


def _origin_meaning(klass: type) -> str:
    package = package_of(klass)
    if package == "trl":
        return "with TRL's meaning (click to expand)"
    if package == "transformers":
        return "with transformers' meaning (click to expand)"
    return "click to expand"


def render_recipe(recipe: str) -> str:
    """Every argument dataclass of the recipe, in the order the recipe parses them."""
    sections = [render_class(cls) for cls in argument_classes(recipe)]
    return "\n\n".join(sections)


def listed_fields(markdown: str) -> set[str]:
    """The field names a rendered page lists in its tables."""
    return set(FIELD_ROW.findall(markdown))


def missing_fields(recipe: str, markdown: str) -> dict[str, list[str]]:
    """Per argument dataclass, the fields that `markdown` does not list (empty when the page is complete)."""
    listed = listed_fields(markdown)
    missing = {}
    for cls in argument_classes(recipe):
        absent = [field.name for field in dataclasses.fields(cls) if field.name not in listed]
        if absent:
            missing[cls.__name__] = absent
    return missing


# ------------------------------------------------------------------------------------------------ API reference

def public_modules() -> dict[str, list[str]]:
    """`alignment._PUBLIC_API`: module -> the names importable from the top level."""
    return dict(_import("alignment")._PUBLIC_API)


def render_api(prefix: str) -> str:
    """A mkdocstrings block per public module under `prefix`, limited to its public names."""
    blocks = []
    for module, names in public_modules().items():
        if module != prefix and not module.startswith(prefix + "."):
            continue
        members = "\n".join(f"        - {name}" for name in sorted(names))
        blocks.append(f"## `{module}`\n\n::: {module}\n    options:\n      show_root_heading: false\n"
                      f"      members:\n{members}\n")
    if not blocks:
        raise ValueError(f"api-reference marker '{prefix}': no module of alignment._PUBLIC_API is under it")
    return "\n".join(blocks)


# ------------------------------------------------------------------------------------------------ mkdocs hook

def render_trl_fields() -> str:
    """Every field TRL's configs define, and what the trainers do with it (alignment.trainers.trl_fields)."""
    # lazy, like the recipe imports above: the hook loads with mkdocs, before any page needs the table
    from alignment.trainers.trl_fields import DPO_FIELDS, GRPO_FIELDS, MODEL_FIELDS

    sections = []
    for title, table in (("GRPOConfig", GRPO_FIELDS), ("DPOConfig", DPO_FIELDS), ("ModelConfig", MODEL_FIELDS)):
        rows = "\n".join(f"| `{name}` | {status} | {_cell(reason)} |" for name, (status, reason) in table.items())
        sections.append(f"### {title}\n\n| field | what happens | why |\n|---|---|---|\n{rows}\n")
    return "\n".join(sections)


def expand(markdown: str) -> str:
    """The page with every marker replaced by its generated Markdown."""
    markdown = CONFIG_MARKER.sub(lambda match: render_recipe(match.group(1)), markdown)
    markdown = TRL_FIELDS_MARKER.sub(lambda match: render_trl_fields(), markdown)
    return API_MARKER.sub(lambda match: render_api(match.group(1)), markdown)


def on_page_markdown(markdown, page=None, config=None, files=None, **kwargs):
    """mkdocs hook: expand the markers of each page before it is rendered."""
    return expand(markdown)
