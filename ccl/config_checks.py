"""Range checks of the stage config dataclasses: one helper, one message, for every stage.

Every stage dataclass runs `check_section` in its `__post_init__`, so a config object that exists is
valid: it is checked once, when it is built (from config.yaml by `ccl.config.section`, in Python, or by
`dataclasses.replace`), and no rule or stage entry checks it again. The schema in workflow/schemas/
holds the keys and defaults; these checks refuse the values a stage cannot run with, config.yaml's
(which the schema refused first) and those of configs built in Python alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ccl.config import config_source

# (key, test of its value, the allowed values in words): ("lr", lambda v: v > 0, "> 0")
Check = tuple[str, Callable[[Any], bool], str]


def check_section(section: str, cfg: object, checks: Iterable[Check]) -> None:
    """Raise ValueError for the first key of `cfg` whose value fails its check, naming
    `<section>.<key>`, the value, what is allowed and the fix. A test that cannot compare the value
    (a string where a number belongs) fails it."""
    for key, ok, allowed in checks:
        value = getattr(cfg, key)
        try:
            good = bool(ok(value))
        except (TypeError, ValueError):
            good = False
        if not good:
            raise ValueError(
                f"{section}.{key} = {value!r}: expected {allowed}; fix the `{section}` section of {config_source()}"
            )


def is_int(value: Any) -> bool:
    """An integer, not a bool (True is an int to Python, never a count to a config)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
