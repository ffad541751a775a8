"""The report of ``compare.py``: the machine it ran on, the targets with their goals, the tables
(absolute numbers, ratios, download, paired mode, the ``--cpu-rows`` tables) rendered as text
for the terminal or as Markdown, and ``update_readme``, which puts the Markdown between the
``compare:begin``/``compare:end`` markers of ``benchmarks/README.md``.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from benchmarks._common import README, ROOT

# Targets (issue 7): (key, description, goal, higher_is_better)
TARGETS: List[Tuple[str, str, float, bool]] = [
    ("py_decode_vs_llama_bench", "Python decode tok/s / llama-bench tg", 0.97, True),
    ("pp512_vs_llama_bench", "Python pp512 / llama-bench pp512 (issue 14)", 0.95, True),
    ("pp128_vs_llama_bench", "Python pp128 / llama-bench pp128 (issue 14)", 0.95, True),
    ("stream_vs_generate", "stream / generate end-to-end tok/s", 0.98, True),
    ("e2e_vs_peer", "end-to-end tok/s / llama-cpp-python", 1.10, True),
    ("first_token_vs_peer", "first token ms / llama-cpp-python", 0.90, False),
    ("trivial_call_ns", "trivial FFI call ns (ev_is_valid)", 150.0, False),
    ("load_vs_llama", "model load ms / llama.cpp's own", 1.05, False),
    ("download_vs_curl", "download MB/s / curl (sha256 inline)", 0.85, True),
]


# --------------------------------------------------------------------------
# machine
# --------------------------------------------------------------------------


def machine_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = {}
        for line in out.splitlines():
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
        info["cpu"] = fields.get("Model name", "?")
        for key in (
            "Architecture",
            "CPU(s)",
            "Thread(s) per core",
            "Core(s) per socket",
            "L2 cache",
            "L3 cache",
            "Hypervisor vendor",
        ):
            if key in fields:
                info[key] = fields[key]
        flags = fields.get("Flags", "").split()
        info["simd"] = [
            f
            for f in (
                "avx",
                "avx2",
                "fma",
                "f16c",
                "avx512f",
                "avx512_vnni",
                "avx512_bf16",
                "sha_ni",
            )
            if f in flags
        ]
    except OSError:
        pass
    try:
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------

TOOLS = [
    ("llama-bench", "llama-bench"),
    ("llama_ref", "llama.cpp loop (C)"),
    ("ev_bench_c", "our C loop"),
    ("py_generate", "Python generate"),
    ("py_stream", "Python stream"),
    ("peer_generate", "llama-cpp-python generate"),
    ("peer_stream", "llama-cpp-python stream"),
    ("ev_bench_c_rp", "our C loop, repeat_penalty 1.1"),
    ("llama_ref_rp", "llama.cpp loop, repeat_penalty 1.1"),
    ("py_generate_rp", "Python generate, repeat_penalty 1.1"),
    ("before", "our C loop, --before binary"),
    ("before_rp", "our C loop, --before binary, repeat_penalty 1.1"),
]

METRICS = [
    ("decode_tok_s", "decode tok/s", "{:.1f}"),
    ("e2e_tok_s", "end-to-end tok/s", "{:.1f}"),
    ("first_token_ms", "first token ms", "{:.1f}"),
    ("pp128_tok_s", "pp128 tok/s", "{:.0f}"),
    ("pp512_tok_s", "pp512 tok/s", "{:.0f}"),
    ("load_ms", "load ms", "{:.1f}"),
]


def _fmt(s: Dict[str, Any], fmt: str) -> Tuple[str, str]:
    if not s or s.get("median") is None:
        return "-", ""
    return fmt.format(s["median"]), f"{fmt.format(s['min'])}–{fmt.format(s['max'])}"


TARGET_RATIO_HEADER = ["target ratio (per round or per paired block)", "median", "min–max", "goal"]
TARGET_RATIO_HEADER.append("met")
PAIRED_RATIO_HEADER = ["paired: ratio (per block)", "median", "p25–p75", "min–max", "blocks"]
PAIRED_RATIO_HEADER += ["goal", "met"]

#: targets that the paired mode measures better than rounds do (see _paired.py)
PAIRED_TARGETS = {
    "py_decode_vs_llama_bench",
    "pp512_vs_llama_bench",
    "pp128_vs_llama_bench",
    "stream_vs_generate",
    "e2e_vs_peer",
    "first_token_vs_peer",
}


def _iqr(s: Dict[str, Any], fmt: str) -> str:
    if s.get("p25") is None:
        return ""
    return f"{fmt.format(s['p25'])}–{fmt.format(s['p75'])}"


def build_paired_tables(res: Dict[str, Any]) -> Tuple[List[List[str]], List[List[str]]]:
    """(absolute numbers, ratios) of the paired blocks; empty without --paired."""
    paired = res.get("paired") or {}
    rows: List[List[str]] = []
    for key, label, fmt in METRICS:
        for tool, tname in TOOLS:
            st = paired.get("pooled", {}).get(tool, {}).get(key)
            if st and st.get("median") is not None:
                rows.append([label, tname, fmt.format(st["median"]), _iqr(st, fmt), str(st["n"])])
    ratio_rows: List[List[str]] = []
    goals = {k: (goal, higher) for k, _, goal, higher in TARGETS}
    descs = {k: desc for k, desc, _, _ in TARGETS}
    for key, r in paired.get("ratios", {}).items():
        if not r.get("n"):
            continue
        goal, higher = goals.get(key, (None, True))
        met = ""
        if goal is not None:
            met = "yes" if (r["median"] >= goal if higher else r["median"] <= goal) else "NO"
        ratio_rows.append(
            [
                descs.get(key, r.get("desc", key)),
                f"{r['median']:.3f}",
                _iqr(r, "{:.3f}"),
                f"{r['min']:.3f}–{r['max']:.3f}",
                str(r["n"]),
                "" if goal is None else ("≥ " if higher else "≤ ") + f"{goal:g}",
                met,
            ]
        )
    return rows, ratio_rows


def build_tables(res: Dict[str, Any]) -> Tuple[List[List[str]], List[List[str]], List[List[str]]]:
    pooled = res["pooled"]
    paired_ratios = (res.get("paired") or {}).get("ratios", {})
    rows: List[List[str]] = []
    for key, label, fmt in METRICS:
        for tool, tname in TOOLS:
            s = pooled.get(tool, {}).get(key)
            if s and s.get("median") is not None:
                m, spread = _fmt(s, fmt)
                rows.append([label, tname, m, spread, str(s["n"])])
    for tool, tname in TOOLS:
        for key, s in sorted(pooled.get(tool, {}).items()):
            if key.startswith("call_ns:"):
                m, spread = _fmt(s, "{:.0f}")
                rows.append([f"call ns: {key[8:]}", tname, m, spread, str(s["n"])])
    ratio_rows: List[List[str]] = []
    for key, desc, goal, higher in TARGETS:
        r = res["ratios"].get(key)
        pr = paired_ratios.get(key)
        if key in PAIRED_TARGETS and pr and pr.get("median") is not None:
            r, desc = pr, f"{desc} [paired, {pr['n']} blocks]"
        elif r and r.get("median") is not None:
            desc = f"{desc} [rounds]"
        if not r or r.get("median") is None:
            ratio_rows.append([desc, "-", "", ("≥ " if higher else "≤ ") + f"{goal:g}", "n/a"])
            continue
        fmt = "{:.0f}" if key == "trivial_call_ns" else "{:.3f}"
        ok = r["median"] >= goal if higher else r["median"] <= goal
        ratio_rows.append(
            [
                desc,
                fmt.format(r["median"]),
                f"{fmt.format(r['min'])}–{fmt.format(r['max'])}",
                ("≥ " if higher else "≤ ") + f"{goal:g}",
                "yes" if ok else "NO",
            ]
        )
    for key, r in sorted(res["ratios"].items()):
        if key in {t[0] for t in TARGETS} or r.get("median") is None:
            continue
        ratio_rows.append(
            [r.get("desc", key), f"{r['median']:.3f}", f"{r['min']:.3f}–{r['max']:.3f}", "", "info"]
        )
    dl_rows: List[List[str]] = []
    for size, d in res.get("download", {}).items():
        for key, label, fmt in (
            ("curl_pipe_mb_s", "curl | sha256sum, MB/s", "{:.0f}"),
            ("curl_file_mb_s", "curl -o file; sha256sum file, MB/s", "{:.0f}"),
            ("ours_mb_s", "ModelManager.download (sha256 inline, fsync), MB/s", "{:.0f}"),
            ("ours_rss_growth_kb", "ModelManager peak RSS growth, KiB", "{:.0f}"),
        ):
            m, spread = _fmt(d.get(key, {}), fmt)
            dl_rows.append([size, label, m, spread])
    return rows, ratio_rows, dl_rows


def _text_table(header: List[str], body: List[List[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(out)


def _markdown_table(header: List[str], body: List[List[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(out)


def _sections(
    res: Dict[str, Any],
    table: Callable[[List[str], List[List[str]]], str],
    paired_intro: Optional[str],
    caption_end: str,
) -> List[str]:
    """The report's tables, in order, drawn by ``table``: the lines of both renderings."""
    rows, ratio_rows, dl_rows = build_tables(res)
    parts = [
        table(["metric", "tool", "median", "min–max", "n"], rows),
        "",
        table(TARGET_RATIO_HEADER, ratio_rows),
    ]
    if dl_rows:
        parts += ["", table(["file", "download", "median", "min–max"], dl_rows)]
    p_rows, p_ratios = build_paired_tables(res)
    if p_rows:
        parts += [""] + ([paired_intro, ""] if paired_intro else [])
        parts += [table(["paired: metric", "tool", "median", "p25–p75", "n"], p_rows), ""]
        parts += [table(PAIRED_RATIO_HEADER, p_ratios)]
    for caption, header, body in _cpu_tables(res):
        parts += ["", caption + caption_end] + ([""] if caption_end else [])
        parts += [table(header, body)]
    return parts


def render_text(res: Dict[str, Any]) -> str:
    return "\n".join(_sections(res, _text_table, None, ""))


def render_markdown(res: Dict[str, Any]) -> str:
    cfg = res["config"]
    m = res["machine"]
    head = (
        f"Run {res['started']} (git {m.get('git', '?')}), {m.get('cpu', '?')}, "
        f"{m.get('CPU(s)', '?')} CPUs, SIMD {' '.join(m.get('simd', []))}; model "
        f"`{Path(cfg['model']).name}`, {cfg['threads']} threads, {cfg['rounds']} rounds × "
        f"{cfg['reps']} reps, tg {cfg['n_gen']} tokens, greedy, repeat_penalty 1.0 unless "
        f"noted; load average {res['load_before']} before, {res['load_after']} after.\n\n"
        f"Command: `{res['command']}`\n"
    )
    intro = (
        f"Paired mode: {cfg.get('paired_blocks')} blocks, one generation of every tool per "
        "block (rotating order), ratios per block:"
    )
    return "\n".join([head] + _sections(res, _markdown_table, intro, ":")) + "\n"


def _cpu_tables(res: Dict[str, Any]) -> List[Tuple[str, List[str], List[List[str]]]]:
    from benchmarks import _cpu_rows

    return _cpu_rows.tables(res)


BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"


def update_readme(markdown: str) -> None:
    text = (
        README.read_text(encoding="utf-8")
        if README.is_file()
        else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    )
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{markdown}{END}{tail}", encoding="utf-8")
