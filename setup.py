"""setuptools entry: `pip install .` fetches llama.cpp, builds the native core
with CMake and compiles the cffi extension edgeveda_ffi._native
(build_native.py does the work; metadata lives in pyproject.toml)."""

import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, str(Path(__file__).resolve().parent))


class BuildNative(build_ext):
    """build_ext that fills the extension from build_native.py first."""

    def build_extension(self, ext):
        modules = []
        if ext.name == "edgeveda_ffi._native":
            import build_native

            try:
                modules = build_native.configure_extension(ext, self.build_temp)
            except build_native.BuildError as exc:
                raise SystemExit(f"edgeveda-ffi build failed: {exc}") from None
        super().build_extension(ext)
        if modules:
            # The CPU variant modules, which the core looks for beside the extension.
            dest = Path(self.get_ext_fullpath(ext.name)).parent / "cpu_variants"
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for mod in modules:
                shutil.copy2(mod, dest / mod.name)
            # llama.cpp and ggml travel as binaries here: their MIT license with them.
            shutil.copy2(build_native.llama_cpp_dir() / "LICENSE", dest / "LICENSE.llama.cpp")


setup(
    # cffi compiles for the limited API (Py_LIMITED_API), so one extension
    # (_native.abi3.so) serves CPython 3.9 and later.
    ext_modules=[Extension("edgeveda_ffi._native", sources=[], py_limited_api=True)],
    cmdclass={"build_ext": BuildNative},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
