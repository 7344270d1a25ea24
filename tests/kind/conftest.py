"""The kind node image's kindnetd stand-in lives beside its build script (hack/kind/), not in a package."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "kind"))
