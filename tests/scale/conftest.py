"""The scale test's pure modules live beside its script (bench/scale/), not in a package."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "scale"))
