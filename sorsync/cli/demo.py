"""The demo source: the built-in KRS simulator serving the bundled fictive data, handed to the
sync service (`sorsync.sync.service.BuiltinSource`) by the commands that sync.

The only way from a sync command to the simulator: below the CLI nothing imports it (the
import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator

from sorsync.sync.binding import SIMULATOR_PREFIX
from sorsync.sync.service import BuiltinSource, SourceError


@functools.cache
def simulator_identity() -> str:
    """The built-in simulator named by the data it serves (the bundled demo snapshot)."""
    from sorsync.simulator.demo import demo_snapshot_path

    digest = hashlib.sha256(demo_snapshot_path().read_bytes()).hexdigest()
    return f"{SIMULATOR_PREFIX}demo-{digest[:16]}"


@contextlib.contextmanager
def serve_builtin() -> Iterator[str]:
    """The built-in simulator with the demo data in a background thread; yields its URL."""
    try:
        from sorsync.simulator.demo import load_demo
        from sorsync.simulator.server import serve_in_thread
        from sorsync.simulator.store import Store
    except ImportError as exc:  # a partial installation
        raise SourceError(
            f"SORSYNC_KRS_URL is not set and the built-in simulator is unavailable ({exc});"
            " set SORSYNC_KRS_URL"
        ) from None
    store = Store()
    try:
        load_demo(store)  # stamped reproducibly: a later delta fetches nothing new
    except Exception as exc:
        raise SourceError(f"could not load the bundled demo data: {exc}") from None
    handle = serve_in_thread(store)
    try:
        yield handle.url
    finally:
        handle.stop()


BUILTIN = BuiltinSource(identity=simulator_identity, serve=serve_builtin)
