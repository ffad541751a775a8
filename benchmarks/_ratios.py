"""The ratios of ``compare.py``: per round (or per paired block), the median of one tool's
metric over the median of another's, summarized over the rounds; the targets (issue 7) and the
context rows beside them, the download ratio against curl, and the peak-RSS difference between
the largest and the smallest downloaded file.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from benchmarks._common import Samples, med, summarize

# --------------------------------------------------------------------------
# ratios
# --------------------------------------------------------------------------


def compute_ratios(rounds: List[Dict[str, Samples]], download: Dict[str, Any]) -> Dict[str, Any]:
    def per_round(num: Tuple[str, str], den: Tuple[str, str]) -> List[float]:
        out = []
        for r in rounds:
            a = med(r.get(num[0], {}).get(num[1], []))
            b = med(r.get(den[0], {}).get(den[1], []))
            if a is not None and b:
                out.append(a / b)
        return out

    ratios: Dict[str, Any] = {}

    def put(key: str, vals: List[float], desc: str = "") -> None:
        s = summarize(vals)
        s["desc"] = desc or key
        ratios[key] = s

    put(
        "py_decode_vs_llama_bench",
        per_round(("py_generate", "decode_tok_s"), ("llama-bench", "decode_tok_s")),
    )
    put("stream_vs_generate", per_round(("py_stream", "e2e_tok_s"), ("py_generate", "e2e_tok_s")))
    put("e2e_vs_peer", per_round(("py_generate", "e2e_tok_s"), ("peer_generate", "e2e_tok_s")))
    put(
        "first_token_vs_peer",
        per_round(("py_stream", "first_token_ms"), ("peer_stream", "first_token_ms")),
    )
    put(
        "trivial_call_ns",
        [v for r in rounds for v in r.get("py_generate", {}).get("call_ns:ev_is_valid(ctx)", [])],
    )
    put("load_vs_llama", per_round(("py_generate", "load_ms"), ("llama_ref", "load_ms")))
    dl = []
    for d in download.values():
        if d.get("ours_mb_s", {}).get("median") and d.get("curl_pipe_mb_s", {}).get("median"):
            dl.append(d["ours_mb_s"]["median"] / d["curl_pipe_mb_s"]["median"])
    put("download_vs_curl", dl)
    # context for the targets
    info = [
        (
            "py_stream_decode_vs_llama_bench",
            ("py_stream", "decode_tok_s"),
            ("llama-bench", "decode_tok_s"),
            "Python stream decode / llama-bench tg",
        ),
        (
            "c_decode_vs_llama_bench",
            ("ev_bench_c", "decode_tok_s"),
            ("llama-bench", "decode_tok_s"),
            "our C loop decode / llama-bench tg",
        ),
        (
            "ref_decode_vs_llama_bench",
            ("llama_ref", "decode_tok_s"),
            ("llama-bench", "decode_tok_s"),
            "llama.cpp loop decode / llama-bench tg",
        ),
        (
            "c_decode_vs_ref",
            ("ev_bench_c", "decode_tok_s"),
            ("llama_ref", "decode_tok_s"),
            "our C loop decode / llama.cpp loop",
        ),
        (
            "py_decode_vs_c",
            ("py_generate", "decode_tok_s"),
            ("ev_bench_c", "decode_tok_s"),
            "Python generate decode / our C loop",
        ),
        (
            "stream_vs_generate_decode",
            ("py_stream", "decode_tok_s"),
            ("py_generate", "decode_tok_s"),
            "stream / generate decode tok/s",
        ),
        (
            "e2e_stream_vs_peer_stream",
            ("py_stream", "e2e_tok_s"),
            ("peer_stream", "e2e_tok_s"),
            "stream end-to-end / llama-cpp-python stream",
        ),
        (
            "peer_decode_vs_llama_bench",
            ("peer_stream", "decode_tok_s"),
            ("llama-bench", "decode_tok_s"),
            "llama-cpp-python stream decode / llama-bench tg",
        ),
        (
            "c_load_vs_ref",
            ("ev_bench_c", "load_ms"),
            ("llama_ref", "load_ms"),
            "ev_init ms / llama.cpp load ms",
        ),
        (
            "peer_load_vs_ref",
            ("peer_generate", "load_ms"),
            ("llama_ref", "load_ms"),
            "llama-cpp-python load ms / llama.cpp load ms",
        ),
        (
            "pp512_vs_llama_bench",
            ("py_generate", "pp512_tok_s"),
            ("llama-bench", "pp512_tok_s"),
            "Python pp512 / llama-bench pp512",
        ),
        (
            "pp128_vs_llama_bench",
            ("py_generate", "pp128_tok_s"),
            ("llama-bench", "pp128_tok_s"),
            "Python pp128 / llama-bench pp128",
        ),
        (
            "rp_cost_c",
            ("ev_bench_c_rp", "decode_tok_s"),
            ("ev_bench_c", "decode_tok_s"),
            "C loop decode, repeat_penalty 1.1 / 1.0",
        ),
        (
            "rp_cost_ref",
            ("llama_ref_rp", "decode_tok_s"),
            ("llama_ref", "decode_tok_s"),
            "llama.cpp loop decode, repeat_penalty 1.1 / 1.0",
        ),
        (
            "rp_cost_before",
            ("before_rp", "decode_tok_s"),
            ("before", "decode_tok_s"),
            "before: C loop decode, repeat_penalty 1.1 / 1.0",
        ),
        (
            "after_vs_before_rp_decode",
            ("ev_bench_c_rp", "decode_tok_s"),
            ("before_rp", "decode_tok_s"),
            "after / before: C loop decode, repeat_penalty 1.1",
        ),
        (
            "after_vs_before_decode",
            ("ev_bench_c", "decode_tok_s"),
            ("before", "decode_tok_s"),
            "after / before: C loop decode, repeat_penalty 1.0",
        ),
        (
            "after_vs_before_load",
            ("ev_bench_c", "load_ms"),
            ("before", "load_ms"),
            "after / before: ev_init ms",
        ),
        (
            "before_load_vs_ref",
            ("before", "load_ms"),
            ("llama_ref", "load_ms"),
            "before: ev_init ms / llama.cpp load ms",
        ),
    ]
    for key, num, den, desc in info:
        put(key, per_round(num, den), desc)
    if download:
        sizes = list(download.values())
        if len(sizes) >= 2:
            a = sizes[0].get("ours_rss_growth_kb", {}).get("median")
            b = sizes[-1].get("ours_rss_growth_kb", {}).get("median")
            if a is not None and b is not None:
                s = summarize([b - a])
                s["desc"] = (
                    f"peak RSS growth, largest minus smallest file (KiB; files {list(download)})"
                )
                ratios["rss_growth_delta_kb"] = s
    return ratios
