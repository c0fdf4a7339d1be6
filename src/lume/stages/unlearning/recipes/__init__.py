"""Recipes: the SemEval-2025 Task 4 systems as named compositions of lume's parts, one file each
(see base.py). Every module in this folder is imported, so a new recipe file is all it takes."""

import importlib
import pkgutil

from lume.stages.unlearning.recipes.base import (RECIPES, TARGET_KINDS, Recipe, recipe_configs, register_recipe,
                                                target_kind)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["RECIPES", "TARGET_KINDS", "Recipe", "recipe_configs", "register_recipe", "target_kind"]
