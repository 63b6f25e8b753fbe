"""The built-in datasets, one file each in their original layouts; importing this package
registers every one (the dataset registry does so on first use)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
