"""The web UI (issue 19): search, unit pages as of a date, SHAK timelines and the replica's
status, server-rendered by the API process itself (api/ui/pages.py)."""

from api.ui.pages import router

__all__ = ["router"]
