"""Fixtures of the tracks tests: `tiny_scene` and `part_masks` come from tests/conftest.py, helpers
from tracks_testkit.py."""
