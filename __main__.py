"""``python -m tonewatch``."""

from tonewatch.cli import run

run()
