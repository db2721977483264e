"""The recipes: one per headline number (recipe.py says what a recipe holds).

    from scratchgen import recipes
    recipes.available()                 # names, sorted
    r = recipes.get("made_mnist")       # a Recipe
    r.command()                         # the `scratchgen train ...` command it runs

`scratchgen reproduce NAME` runs one to the end and prints ours against the expected and the
paper's number; `scratchgen reproduce --list` shows them all. Adding a recipe is adding one file
here that defines RECIPE.
"""
import importlib
import pkgutil

from .recipe import Recipe  # noqa: F401

_RECIPES = {}


def _load():
    if not _RECIPES:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "recipe":
                recipe = importlib.import_module(f"{__name__}.{info.name}").RECIPE
                assert recipe.name == info.name, (recipe.name, info.name)
                _RECIPES[recipe.name] = recipe
    return _RECIPES


def available():
    return sorted(_load())


def get(name):
    recipes = _load()
    if name not in recipes:
        import difflib
        near = difflib.get_close_matches(name, recipes, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise KeyError(f"unknown recipe {name!r}{hint} (`scratchgen reproduce --list` shows them)")
    return recipes[name]
