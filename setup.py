"""Which folders the wheel carries, and under which names; the rest of the packaging is in pyproject.toml.

recipes/ and scripts/ stay top-level folders of the checkout (`accelerate launch recipes/grpo.py`, `from
scripts.generate import main` in the tests), but install as `alignment.recipes` and `alignment.scripts`: the
`moalign` command (alignment/console.py) finds them there, and site-packages gets no generic top-level `recipes` or
`scripts`. pyproject.toml cannot list such a mapped folder beside the packages it discovers, hence this file.
"""

from setuptools import find_namespace_packages, setup

MAPPED = {"alignment.recipes": "recipes", "alignment.scripts": "scripts"}

packages = find_namespace_packages(include=["alignment*", "reward_models*"])
for package, folder in MAPPED.items():  # with their subfolders (recipes/configs, its data/), as pyproject would
    packages += [package] + [f"{package}.{sub}" for sub in find_namespace_packages(folder)]

setup(packages=packages, package_dir=MAPPED)
