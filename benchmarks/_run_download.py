"""One model download through ``ModelManager``, timed, with peak RSS; prints JSON.

    python -m benchmarks._run_download --url URL --sha256 HEX --size N --dir DIR

Runs in a fresh process so ``ru_maxrss`` (the process's peak resident set)
belongs to this one download: ``rss_before_kb`` is the peak after the imports,
``rss_peak_kb`` after the download; their difference is what the download
itself needed, which must not grow with the file's size.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--chunk-size", type=int, default=0, help="0: the manager's default")
    args = parser.parse_args(argv)

    from edgeveda_ffi import ModelManager, ModelSpec

    kw = {"chunk_size": args.chunk_size} if args.chunk_size else {}
    manager = ModelManager(args.dir, max_retries=0, **kw)
    spec = ModelSpec(
        id="bench-download",
        name="bench download",
        sources=(args.url,),
        size_bytes=args.size,
        sha256=args.sha256,
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    path = manager.download(spec)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump(
        {
            "path": str(path),
            "bytes": args.size,
            "wall_s": wall,
            "mb_s": args.size / wall / 1e6,
            "rss_before_kb": before,
            "rss_peak_kb": peak,
            "rss_growth_kb": peak - before,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
