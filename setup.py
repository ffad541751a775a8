"""setuptools entry: `pip install .` fetches llama.cpp, builds the native core
with CMake and compiles the cffi extension edgeveda_ffi._native
(build_native.py does the work; metadata lives in pyproject.toml)."""

import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, str(Path(__file__).resolve().parent))


class BuildNative(build_ext):
    """build_ext that fills the extension from build_native.py first."""

    def build_extension(self, ext):
        if ext.name == "edgeveda_ffi._native":
            import build_native

            try:
                build_native.configure_extension(ext, self.build_temp)
            except build_native.BuildError as exc:
                raise SystemExit(f"edgeveda-ffi build failed: {exc}") from None
        super().build_extension(ext)


setup(
    ext_modules=[Extension("edgeveda_ffi._native", sources=[])],
    cmdclass={"build_ext": BuildNative},
)
