"""Measure edgeveda_ffi with the shared harness; prints one JSON object.

    python -m benchmarks._run_ours --model M --threads 2 [--reps 3] [--n-gen 128]

Run by ``benchmarks/compare.py`` in a fresh process (the peer runs the same
procedure in its own virtual environment).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Iterator, List, Optional

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _harness as h  # noqa: E402


class OursAdapter:
    def __init__(self, args: Any) -> None:
        from edgeveda_ffi import Backend, EdgeVeda, GenerationParams

        self._cls = EdgeVeda
        self._cpu = Backend.CPU
        self.args = args
        self.engine: Optional[Any] = None
        self.params = GenerationParams(
            temperature=0.0, repeat_penalty=args.repeat_penalty, max_tokens=args.n_gen
        )
        self._stream: Optional[Any] = None
        self._last_stats: Optional[Any] = None

    def load(self) -> None:
        self.engine = self._cls(
            self.args.model,
            num_threads=self.args.threads,
            context_size=self.args.context_size,
            backend=self._cpu,  # as the other tools
        )
        self.engine.set_prompt_cache(False)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def trivial_calls(self) -> Any:
        from edgeveda_ffi.engine.bindings import lib

        eng = self.engine
        return {
            "ev_is_valid(ctx)": ("f(c)", {"f": lib.ev_is_valid, "c": eng._ctx}),  # type: ignore[union-attr]
            "ev_version()": ("f()", {"f": lib.ev_version}),
            "EdgeVeda.is_valid": ("e.is_valid", {"e": eng}),
        }

    def tokenize(self, text: str) -> List[int]:
        return self.engine.tokenize(text)  # type: ignore[union-attr,no-any-return]

    def detokenize(self, ids: List[int]) -> str:
        return self.engine.detokenize(ids)  # type: ignore[union-attr,no-any-return]

    def process(self, text: str) -> None:
        self.engine.generate(text, self.params, max_tokens=0)  # type: ignore[union-attr]

    def generate(self, text: str, n: int) -> int:
        r = self.engine.generate(text, self.params, max_tokens=n)  # type: ignore[union-attr]
        self._last_stats = r.stats
        return int(r.completion_tokens)

    def last_decode_tok_s(self) -> float:
        s = self._last_stats
        if s is None or s.completion_tokens < 2 or s.generation_ms <= 0:
            return float("nan")
        return float((s.completion_tokens - 1) * 1e3 / s.generation_ms)

    def stream(self, text: str, n: int) -> Iterator[str]:
        s = self.engine.stream(text, self.params, max_tokens=n)  # type: ignore[union-attr]
        self._stream = s
        yield from s
        # the native stream is finished: its stats are final
        self._count = s.stats.completion_tokens
        s.close()

    def last_count(self) -> int:
        return int(self._count)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    h.add_common_args(parser)
    args = h.finish_args(parser.parse_args(argv))
    import edgeveda_ffi

    if args.serve:
        h.serve(OursAdapter(args), args)
        return 0
    result = h.run_suite(OursAdapter(args), args)
    result["tool"] = "edgeveda_ffi"
    result["version"] = getattr(edgeveda_ffi, "__version__", "?")
    h.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
