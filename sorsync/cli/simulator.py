"""Commands: see design.md §4. (Being built.)"""

from __future__ import annotations
