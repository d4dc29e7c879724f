"""Phone numbers, on accounts and on addresses alike: strict E.164 and nothing else."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

# "+", a country code (none begins with 0), then the rest: 8 to 15 digits in all. No spaces,
# dashes or extensions, so one number has one spelling.
E164_PATTERN = r"^\+[1-9][0-9]{7,14}$"
E164_MAX_LENGTH = 16

Phone = Annotated[str, StringConstraints(pattern=E164_PATTERN)]
