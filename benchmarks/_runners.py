"""The runs of ``compare.py``: one run of each tool (llama-bench, the C loops ``ev_bench_c`` and
``llama_ref``, a Python runner process of ours or of the peer), each returning its samples as a
flat dict of metric -> list, and the download comparison (curl against our
``ModelManager.download``, on random files served from 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from benchmarks._common import OUT_DIR, ROOT, Samples, _run, log, summarize

# --------------------------------------------------------------------------
# the runs (each returns a flat dict of metric -> list of samples)
# --------------------------------------------------------------------------


def run_llama_bench(exe: Path, a: Any, repack: bool = True) -> Samples:
    """llama-bench's pp and tg samples; repack=False: extra buffer types off (--repack 0)."""
    pp = ",".join(str(n) for n in a.pp)
    proc = _run(
        [
            exe,
            "-m",
            a.model,
            "-t",
            str(a.threads),
            "-p",
            pp,
            "-n",
            str(a.n_gen),
            "-r",
            str(a.reps),
            "-o",
            "json",
            *([] if repack else ["--repack", "0"]),
        ],
        "llama-bench",
        capture=True,
    )
    rows = json.loads(proc.stdout)
    out: Samples = {}
    for row in rows:
        if row.get("n_gen", 0) == 0:
            out[f"pp{row['n_prompt']}_tok_s"] = list(row["samples_ts"])
        elif row.get("n_prompt", 0) == 0:
            out["decode_tok_s"] = list(row["samples_ts"])
    return out


LIGHT_KEYS = ("decode_tok_s", "e2e_tok_s", "first_token_ms", "tokens")


def run_c_tool(
    exe: Path, a: Any, prompt_file: Path, repeat_penalty: float, light: bool = False
) -> Samples:
    """One run of ev_bench_c or llama_ref; light: generation only (no pp, no load)."""
    pp = "" if light else ",".join(str(n) for n in a.pp)
    proc = _run(
        [
            exe,
            "-m",
            a.model,
            "-t",
            str(a.threads),
            "-p",
            pp,
            "-n",
            str(a.n_gen),
            "-r",
            str(a.reps),
            "--load-reps",
            "0" if light else str(a.reps),
            "--repeat-penalty",
            str(repeat_penalty),
            "--prompt-file",
            prompt_file,
        ],
        exe.name,
        capture=True,
    )
    d = json.loads(proc.stdout)
    out: Samples = {"load_ms": d["load_ms"]}
    for p in d["pp"]:
        out[f"pp{p['n_prompt']}_tok_s"] = p["tok_s"]
    tg = d["tg"]
    out["decode_tok_s"] = tg["decode_tok_s"]
    out["e2e_tok_s"] = tg["e2e_tok_s"]
    out["first_token_ms"] = tg["first_token_ms"]
    out["tokens"] = [float(x) for x in tg["generated"]]
    return {k: v for k, v in out.items() if k in LIGHT_KEYS} if light else out


def run_python_tool(
    python: Path,
    script: List[str],
    a: Any,
    prompt_file: Path,
    repeat_penalty: float,
    light: bool = False,
    env: Optional[Dict[str, str]] = None,
) -> Tuple[Samples, Samples]:
    """(generate-side samples, stream-side samples) of one runner process."""
    cmd = [
        python,
        *script,
        "--model",
        a.model,
        "--threads",
        str(a.threads),
        "--reps",
        str(a.reps),
        "--load-reps",
        "1" if light else str(a.reps),
        "--n-gen",
        str(a.n_gen),
        "--pp",
        "" if light else ",".join(str(n) for n in a.pp),
        "--repeat-penalty",
        str(repeat_penalty),
        "--prompt-file",
        prompt_file,
        "--calls",
        "1000" if light else str(a.calls),
    ]
    proc = _run(cmd, script[-1], env=env, cwd=ROOT, capture=True)
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    gen: Samples = {"load_ms": d["load_ms"]["values"]}
    for n, p in d["pp"].items():
        gen[f"pp{n}_tok_s"] = p["tok_s"]["values"]
    for name, s in d["calls_ns"].items():
        gen[f"call_ns:{name}"] = s["values"]
    gen["e2e_tok_s"] = d["generate"]["e2e_tok_s"]["values"]
    gen["decode_tok_s"] = d["generate"]["decode_tok_s"]["values"]
    gen["tokens"] = [float(x) for x in d["generate"]["tokens"]]
    st: Samples = {
        "e2e_tok_s": d["stream"]["e2e_tok_s"]["values"],
        "decode_tok_s": d["stream"]["decode_tok_s"]["values"],
        "first_token_ms": d["stream"]["first_token_ms"]["values"],
        "tokens": [float(x) for x in d["stream"]["tokens"]],
    }
    if light:
        gen = {k: v for k, v in gen.items() if k in LIGHT_KEYS}
        st = {k: v for k, v in st.items() if k in LIGHT_KEYS}
    return gen, st


# --------------------------------------------------------------------------
# download: curl vs ModelManager
# --------------------------------------------------------------------------


def _write_random(path: Path, size: int) -> str:
    h = hashlib.sha256()
    block = 1 << 22
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(block, left))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _timed_curl(script: str, size: int, digest: str) -> float:
    """MB/s of a bash pipeline that fetches with curl and prints the sha256
    first (checked against ``digest``)."""
    t0 = time.perf_counter()
    p = subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0 or not p.stdout or p.stdout.split()[0] != digest:
        raise RuntimeError(f"{script} failed: {p.stderr}")
    return size / wall / 1e6


def run_download(a: Any) -> Dict[str, Any]:
    if shutil.which("curl") is None or shutil.which("sha256sum") is None:
        log("curl or sha256sum missing: skipping the download comparison")
        return {}
    work = Path(tempfile.mkdtemp(prefix="edgeveda-bench-dl-", dir=str(OUT_DIR)))
    srv = None
    try:
        src = work / "src"
        src.mkdir()
        files = []
        for mib in a.download_sizes:
            size = int(mib * 1024 * 1024)
            name = f"blob-{mib}MiB.bin"
            files.append((mib, size, name, _write_random(src / name, size)))
        srv = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._fileserver", str(src)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert srv.stdout is not None
        port = int(srv.stdout.readline())
        result: Dict[str, Any] = {}
        for mib, size, name, digest in files:
            url = f"http://127.0.0.1:{port}/{name}"
            rows: Dict[str, List[float]] = {
                "curl_pipe_mb_s": [],
                "curl_file_mb_s": [],
                "ours_mb_s": [],
                "ours_rss_growth_kb": [],
                "ours_rss_peak_kb": [],
            }
            dest = work / "curl.out"
            for rep in range(a.download_reps):
                # the order rotates, like the rounds
                order = ["pipe", "file", "ours"]
                order = order[rep % 3 :] + order[: rep % 3]
                for which in order:
                    if which == "pipe":
                        mb_s = _timed_curl(f"curl -sS --fail '{url}' | sha256sum", size, digest)
                        rows["curl_pipe_mb_s"].append(mb_s)
                    elif which == "file":
                        cmd = f"curl -sS --fail -o '{dest}' '{url}' && sha256sum '{dest}'"
                        rows["curl_file_mb_s"].append(_timed_curl(cmd, size, digest))
                        dest.unlink()
                    else:
                        models = work / f"models-{rep}"
                        p = subprocess.run(
                            [
                                sys.executable,
                                "-m",
                                "benchmarks._run_download",
                                "--url",
                                url,
                                "--sha256",
                                digest,
                                "--size",
                                str(size),
                                "--dir",
                                str(models),
                            ],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                        )
                        if p.returncode != 0:
                            raise RuntimeError(f"our download failed: {p.stderr[-2000:]}")
                        d = json.loads(p.stdout.strip().splitlines()[-1])
                        rows["ours_mb_s"].append(d["mb_s"])
                        rows["ours_rss_growth_kb"].append(d["rss_growth_kb"])
                        rows["ours_rss_peak_kb"].append(d["rss_peak_kb"])
                        shutil.rmtree(models, ignore_errors=True)
            result[f"{mib}MiB"] = {k: summarize(v) for k, v in rows.items()}
            result[f"{mib}MiB"]["bytes"] = size
        return result
    finally:
        if srv is not None:
            if srv.stdin:
                srv.stdin.close()
            try:
                srv.wait(timeout=10)
            except subprocess.TimeoutExpired:
                srv.kill()
        shutil.rmtree(work, ignore_errors=True)
