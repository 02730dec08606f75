#!/usr/bin/env python3
"""Side-by-side benchmark of memwall and llama.cpp on the same GGUF files.

Driven by scripts/bench-vs-llama-cpp.sh (which builds llama.cpp and writes the
files); usable alone:

    tools/bench_vs_llama_cpp.py --llama-bench BIN --memwall BIN \
        --probe probe.json -p 512 -n 128 -t 1,2 -r 5 FILE...

For every file, thread count and test (pp N, then tg N) it runs llama-bench
(with its default repacking of weights at load, then with `--repack 0`, its
file layout: which of the two is faster depends on the type and the test)
and then `memwall bench --json` back to back, so all see the same machine
state (a shared machine drifts over minutes; the ratio of two neighbouring
runs is far steadier than either number). Both report tokens/s as the median
of their runs (llama-bench's JSON gives every sample in `samples_ts`). The
ratio is against the better of llama.cpp's two configurations.

MBU for both engines comes from memwall's cost model (`memwall bench
--cost-only`: bytes moved per token for the file and test) divided by the
streaming-read bandwidth the probe measured at the same thread count.
memwall's live MBU (its `mbu_live`) is against the bandwidth it sampled
while each of its runs ran (a shared host's bandwidth moves with its
neighbours; llama-bench cannot be sampled inside, so it has no such column).

Files memwall cannot run (for example k-quants before the kernels support
them) show "unsupported" in memwall's columns instead of failing the run.
Prints a markdown table on stdout and writes every raw result to --raw.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def log(msg):
    print(f"[bench-vs-llama-cpp] {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout):
    """Runs cmd; returns (returncode, stdout, stderr)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return -1, "", f"timed out after {timeout} s"


def json_objects(text):
    """Every JSON object in text: a JSON array (llama-bench) or JSON lines (memwall)."""
    text = text.strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_args(test):
    kind, n = test[:2], test[2:]
    return (n, "0") if kind == "pp" else ("0", n)


def llama_bench(args, path, test, threads, repack=True):
    p, n = test_args(test)
    cmd = [args.llama_bench, "-m", path, "-p", p, "-n", n, "-t", str(threads), "-r", str(args.reps), "-o", "json"]
    if not repack:
        cmd += ["--repack", "0"]
    rc, out, err = run(cmd, args.timeout)
    if rc != 0:
        return {"status": "failed", "error": last_line(err)}
    rows = json_objects(out)
    if not rows:
        return {"status": "failed", "error": "no output"}
    r = rows[0]
    samples = r.get("samples_ts") or [r["avg_ts"]]
    return {"status": "ok", "tokens_per_s": statistics.median(samples), "mean_ts": r["avg_ts"],
            "stddev_ts": r.get("stddev_ts", 0.0), "raw": r}


def memwall_bench(args, path, test, threads):
    p, n = test_args(test)
    cmd = [args.memwall, "bench", "-m", path, "-p", p, "-n", n, "-t", str(threads), "-r", str(args.reps),
           "--json", "--probe-file", args.probe]
    rc, out, err = run(cmd, args.timeout)
    if rc != 0:
        status = "unsupported" if "unsupported" in err.lower() or "cannot compute" in err.lower() else "failed"
        return {"status": status, "error": last_line(err)}
    rows = json_objects(out)
    if not rows:
        return {"status": "failed", "error": "no output"}
    r = rows[0]
    return {"status": "ok", "tokens_per_s": r["tokens_per_s"], "mbu": r.get("mbu"),
            "mbu_live": r.get("mbu_live"), "bandwidth_live": r.get("bandwidth_live"), "raw": r}


def costs(args, path):
    """Bytes and FLOPs per token of each test, from memwall's cost model."""
    cmd = [args.memwall, "bench", "-m", path, "-p", str(args.n_prompt), "-n", str(args.n_gen), "--cost-only"]
    rc, out, err = run(cmd, 120)
    if rc != 0:
        log(f"no cost model for {path}: {last_line(err)}")
        return {}
    return {r["test"]: r for r in json_objects(out)}


def last_line(text):
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    return lines[-1] if lines else ""


def bandwidth(probe, threads):
    rows = [c for c in probe["by_threads"] if c["threads"] <= threads] or probe["by_threads"]
    return max(rows, key=lambda c: c["threads"])["bandwidth"]


def fmt_ts(r):
    return f"{r['tokens_per_s']:.2f}" if r["status"] == "ok" else r["status"]


def mbu(test, r):
    """MBU of a decode test (prefill reads each weight once for many tokens: no MBU)."""
    return r.get("mbu") if test.startswith("tg") else None


def fmt_pct(x):
    return "-" if x is None else f"{100 * x:.0f}%"


def fmt_live(test, r):
    """memwall's live MBU of a decode test and the bandwidth it sampled."""
    if not test.startswith("tg") or r.get("mbu_live") is None or r.get("bandwidth_live") is None:
        return "-"
    return f"{100 * r['mbu_live']:.0f}% ({r['bandwidth_live'] / 1e9:.1f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("--memwall", required=True)
    ap.add_argument("--probe", required=True, help="memwall probe JSON (memwall bench --probe --json)")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-t", "--threads", default="1,2")
    ap.add_argument("-r", "--reps", type=int, default=5)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per benchmark invocation")
    ap.add_argument("--raw", help="write every raw result here (JSON), updated after every row")
    ap.add_argument("--table", help="write the markdown table here, updated after every row")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    with open(args.probe) as f:
        probe = json.load(f)
    threads = [int(t) for t in args.threads.split(",")]
    tests = [t for t in (f"pp{args.n_prompt}" if args.n_prompt else None,
                         f"tg{args.n_gen}" if args.n_gen else None) if t]

    rows, raw = [], []
    started = time.time()
    for path in args.files:
        name = os.path.basename(path).removesuffix(".gguf")
        cost = costs(args, path)
        for t in threads:
            bw = bandwidth(probe, t)
            for test in tests:
                log(f"{name} {test} t={t}: llama.cpp")
                lc = llama_bench(args, path, test, t)
                log(f"{name} {test} t={t}: llama.cpp --repack 0")
                lc_plain = llama_bench(args, path, test, t, repack=False)
                log(f"{name} {test} t={t}: memwall")
                mw = memwall_bench(args, path, test, t)
                bpt = cost.get(test, {}).get("bytes_per_token")
                for r in (lc, lc_plain, mw):
                    if r["status"] == "ok" and bpt is not None:
                        r["mbu"] = bpt * r["tokens_per_s"] / bw
                best = max((r for r in (lc, lc_plain) if r["status"] == "ok"),
                           key=lambda r: r["tokens_per_s"], default=lc)
                ratio = (mw["tokens_per_s"] / best["tokens_per_s"]
                         if best["status"] == "ok" and mw["status"] == "ok" else None)
                rows.append((name, test, t, lc, lc_plain, best, mw, ratio))
                raw.append({"file": path, "test": test, "threads": t, "bandwidth": bw, "bytes_per_token": bpt,
                            "llama.cpp": lc, "llama.cpp no-repack": lc_plain, "memwall": mw, "ratio": ratio})
                write_outputs(args, probe, rows, raw, started)
                log(f"  llama.cpp {fmt_ts(lc)} / no-repack {fmt_ts(lc_plain)} t/s, memwall {fmt_ts(mw)} t/s"
                    + (f", ratio {ratio:.2f}" if ratio else "")
                    + (f" ({mw.get('error')})" if mw["status"] != "ok" else ""))

    write_outputs(args, probe, rows, raw, started, final=True)


def table(args, probe, rows, started):
    lines = ["| file | test | threads | llama.cpp t/s | llama.cpp --repack 0 | memwall t/s "
             "| memwall / best llama.cpp | MBU llama.cpp (best) | MBU memwall | live MBU memwall (GB/s) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, test, t, lc, lc_plain, best, mw, ratio in rows:
        lines.append(f"| {name} | {test} | {t} | {fmt_ts(lc)} | {fmt_ts(lc_plain)} | {fmt_ts(mw)} | "
                     f"{'-' if ratio is None else f'**{ratio:.2f}×**'} | {fmt_pct(mbu(test, best))} "
                     f"| {fmt_pct(mbu(test, mw))} | {fmt_live(test, mw)} |")
    lines.append("")
    lines.append(f"Median of {args.reps} runs each; MBU against the probe's streaming-read bandwidth "
                 + ", ".join(f"{c['bandwidth'] / 1e9:.1f} GB/s at {c['threads']} thread(s)" for c in probe["by_threads"])
                 + f"; {time.time() - started:.0f} s in total.")
    return "\n".join(lines) + "\n"


def write_outputs(args, probe, rows, raw, started, final=False):
    text = table(args, probe, rows, started)
    if final:
        sys.stdout.write(text)
    if args.table:
        with open(args.table, "w") as f:
            f.write(text)
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump({"probe": probe, "results": raw}, f, indent=1)


if __name__ == "__main__":
    main()
