"""The build steps pyproject.toml cannot declare: the migrations inside the package, and the one
compiled module, sorsync/krs/_pgrows.pyx, as an optional part.

* The migrations stay at the top (`migrations/`, where Alembic and the README expect them); a
  built package carries a copy as `sorsync/_migrations`, where sorsync/db/migrate.py looks when
  there is no checkout beside the package.
* The compiled module reads lxml's trees through lxml's public C API, so it compiles against the
  lxml it will run with (a build requirement pinned to the same version as the runtime one).
  Where it cannot be built (no C compiler or Python headers), or with SORSYNC_NO_EXTENSION=1,
  the install goes on without it and sorsync runs on the Python walk (sorsync/krs/feed.py),
  which is the definition the compiled one is tested against.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
NO_EXTENSION = os.environ.get("SORSYNC_NO_EXTENSION", "").strip().lower() in {"1", "true", "yes"}
FALLBACK = (
    "sorsync: the compiled page walk (sorsync/krs/_pgrows.pyx) is not built ({why}); installing"
    " without it — sorsync runs on the Python walk, which is slower but gives the same rows"
)


class BuildPyWithMigrations(build_py):
    """Copy migrations/ into the built package as sorsync/_migrations."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install finds migrations/ beside the package
        target = Path(self.build_lib) / "sorsync" / "_migrations"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            ROOT / "migrations",
            target,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )


class OptionalBuildExt(build_ext):
    """build_ext that leaves the compiled module out instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all (DistutilsPlatformError and the like)
            _say(FALLBACK.format(why=_first_line(exc)))

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # the compiler or the headers failed
            _say(FALLBACK.format(why=_first_line(exc)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _say(message: str) -> None:
    # Once per install: pip runs this file for the metadata hooks too, where nothing is built.
    if any(step in sys.argv for step in ("bdist_wheel", "build_ext", "editable_wheel")):
        print(message, file=sys.stderr)  # noqa: T201 - pip shows a build's output with -v


def _extensions() -> list[Extension]:
    if NO_EXTENSION:
        _say(FALLBACK.format(why="SORSYNC_NO_EXTENSION=1"))
        return []
    try:
        import lxml
        from Cython.Build import cythonize
    except ImportError as exc:
        _say(FALLBACK.format(why=f"cannot import {exc.name}"))
        return []
    extensions: list[Extension] = cythonize(
        [
            Extension(
                "sorsync.krs._pgrows",
                ["sorsync/krs/_pgrows.pyx"],
                include_dirs=lxml.get_include(),
            )
        ],
        compiler_directives={"language_level": "3"},
    )
    return extensions


setup(
    ext_modules=_extensions(),
    cmdclass={"build_py": BuildPyWithMigrations, "build_ext": OptionalBuildExt},
)
