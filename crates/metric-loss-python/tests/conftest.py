import sys
from pathlib import Path

# The helpers next to the tests (conformance.py) import by name.
sys.path.insert(0, str(Path(__file__).parent))
