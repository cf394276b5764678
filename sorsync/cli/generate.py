"""`sorsync generate` (see design.md §4)."""
