"""Builds the one compiled module, sorsync/krs/_pgrows.pyx; everything else is in pyproject.toml.

It reads lxml's trees through lxml's public C API, so it compiles against the lxml it will run
with (a build requirement pinned to the same version as the runtime one).
"""

import lxml
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension(
                "sorsync.krs._pgrows",
                ["sorsync/krs/_pgrows.pyx"],
                include_dirs=lxml.get_include(),
            )
        ],
        compiler_directives={"language_level": "3"},
    )
)
