"""The image build's Python step lives beside its script (hack/images/), not in a package."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "images"))
