"""A child Python where named packages are not installed, for real: a meta-path finder in front of
every other one makes `import pandas` (or any BLOCKED top-level name, the comma-separated
sys.argv[1]) fail there exactly as it does where the package was never installed, whatever this
environment holds. Prepend BLOCKER to the code a `python -c` runs."""

BLOCKER = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""
