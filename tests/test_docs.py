"""The README stays short and true: its two commands, its code that runs, and links that resolve
(README.md and docs/); every registered model has its docs page's recipe or is listed."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_is_short_and_has_the_two_commands():
    assert len(README.splitlines()) <= 120
    assert 'python -m pip install -e ".[dev]" && scratchgen train vae' in README
    assert "python -m pytest -q" in README


def test_readme_code_runs():
    code = re.findall(r"```python\n(.*?)```", README, re.S)
    assert code
    for block in code:
        exec(compile(block, "README.md", "exec"), {})


def test_links_in_readme_and_docs_resolve():
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_every_recipe_in_the_readme_exists():
    from scratchgen import recipes
    named = set(re.findall(r"^\| [^|]+ \| `([a-z0-9_]+)` \|", README, re.M))
    assert named and named <= set(recipes.available())
    assert set(recipes.available()) <= named
