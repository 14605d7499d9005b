#!/usr/bin/env python3
"""Figures and table of the outage replay (bench/incident/replay.py writes the data).

    plot.py OUTDIR [--doc REPO]

Reads OUTDIR/results.json and OUTDIR/run-X.json; writes OUTDIR/run-X.png (one figure per run: handler
processes, the cgroup's memory against its cap, OOM kills, the host's and the sender's queue, on one
time axis) and OUTDIR/results.md (the table). --doc: also copies the figures to REPO/docs/incident/
and puts the table into REPO/docs/incident.md between its replay markers.
"""
import json
import os
import shutil
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BEGIN, END = "<!-- replay:begin -->", "<!-- replay:end -->"


def figure(r, params, path):
    s = r["samples"]
    t = [x["t"] for x in s]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, sharex=True, figsize=(9, 7.5), dpi=100,
                                        gridspec_kw={"height_ratios": [1, 1.2, 1.2]})
    fig.suptitle(f"Run {r['run']}: {r['label']}", fontsize=12)
    wave0 = params["wave_start"]
    wave1 = wave0 + params["wave_seconds"]
    for ax in (ax1, ax2, ax3):
        ax.axvspan(wave0, wave1, color="tab:orange", alpha=0.08, lw=0)
        ax.grid(alpha=0.3)
    ax1.plot(t, [x["handlers"] for x in s], color="tab:purple", lw=1.2)
    ax1.set_ylabel("handlers alive", color="tab:purple")
    k = ax1.twinx()
    k.plot(t, [x["oom_kills"] for x in s], color="tab:red", lw=1.2)
    k.set_ylabel("OOM kills (total)", color="tab:red")
    ax1.text(wave0 + 1, 0.02, "wave", transform=ax1.get_xaxis_transform(), color="tab:orange", fontsize=8)

    ax2.plot(t, [x["usage_mb"] for x in s], color="tab:blue", lw=1.2, label="cgroup memory (usage)")
    ax2.plot(t, [x["filter_rss_mb"] for x in s], color="tab:green", lw=1.2, label="filter daemon RSS")
    ax2.axhline(params["cap_mb"], color="tab:red", ls="--", lw=1, label=f"cap {params['cap_mb']} MB")
    for name, when in r["filter_deaths"].items():
        for ax in (ax1, ax2, ax3):
            ax.axvline(when, color="black", lw=2)
        ax2.annotate(f"{name} killed", (when, params["cap_mb"] * 0.35), rotation=90, fontsize=8,
                     xytext=(3, 0), textcoords="offset points")
    ax2.set_ylabel("MB")
    ax2.set_ylim(0, params["cap_mb"] * 1.15)
    ax2.legend(loc="upper right", fontsize=7)

    ax3.plot(t, [x["host_queue"] for x in s], color="tab:brown", lw=1.2, label="host Postfix queue")
    ax3.plot(t, [x["mx_queue_wave"] for x in s], color="tab:gray", lw=1.2, label="sender queue: wave")
    ax3.plot(t, [x["mx_queue_ham"] for x in s], color="black", lw=1.2, label="sender queue: ham")
    ax3.plot(t, [x["tickets"] for x in s], color="tab:olive", lw=1, ls=":", label="tickets filed")
    if r["ops"].get("returned") is not None:
        for ax in (ax1, ax2, ax3):
            ax.axvline(r["ops"]["returned"], color="tab:cyan", lw=1.5)
        ax3.annotate("signatures add returns", (r["ops"]["returned"], 0.9), xycoords=("data", "axes fraction"),
                     fontsize=8, xytext=(3, 0), textcoords="offset points")
    ax3.set_ylabel("messages")
    ax3.set_xlabel("seconds (sender: 4xx retried after 5, 10, 20, 30 s)")
    ax3.legend(loc="upper left", fontsize=7)
    fig.text(0.01, 0.004, summary_line(r), fontsize=8)
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def delay(r, key="ham_delay_worst_s"):
    v = r[key]
    if v is None:
        return "-"
    return (">= " if key == "ham_delay_worst_s" and r["ham_delay_worst_is_lower_bound"] else "") + f"{v:g} s"


def summary_line(r):
    return (f"peak handlers {r['peak_handlers']}, peak memory {r['peak_memory_mb']} MB of {r['cap_mb']}, "
            f"OOM kills {r['oom_kills']} ({kills(r)}),\npeak host queue {r['peak_host_queue']}, "
            f"peak sender queue {r['peak_mx_queue']}, ham delay median {delay(r, 'ham_delay_median_s')} "
            f"worst {delay(r)}, wave filed as tickets {r['wave_filed']}/{r['wave']}")


def kills(r):
    if not r["oom_kills"]:
        return "none"
    by = r["oom_kills_by_process"]
    return ", ".join(f"{n} {name}" for name, n in sorted(by.items(), key=lambda x: -x[1])) or "process not logged"


def table(results, params):
    rows = [
        ("peak handler processes", lambda r: r["peak_handlers"]),
        (f"peak cgroup memory (cap {params['cap_mb']} MB)", lambda r: f"{r['peak_memory_mb']} MB"),
        ("OOM kills (process)", lambda r: f"{r['oom_kills']} ({kills(r)})"),
        ("filter RSS, peak", lambda r: f"{r['peak_filter_rss_mb']} MB"),
        ("OOM badness, filter vs a handler (MB, peak)", lambda r: f"{r['peak_filter_badness']} vs "
         f"{r['peak_handler_badness']}"),
        ("filter still running at the end", lambda r: "yes" if r["filter_running_at_end"] else "**no**"),
        ("peak host Postfix queue", lambda r: r["peak_host_queue"]),
        ("peak sender queue (not yet accepted)", lambda r: r["peak_mx_queue"]),
        ("sender queue at the end", lambda r: r["mx_queue_at_end"]),
        ("ham filed / sent", lambda r: f"{r['ham_filed']} / {r['ham']}"),
        ("ham turned away (5xx) / filed twice", lambda r: f"{r['ham_rejected']} / {r['ham_filed_twice']}"),
        ("ham that needed a retry (got a 4xx)", lambda r: r.get("ham_retried", "-")),
        ("ham delay median", lambda r: delay(r, "ham_delay_median_s")),
        ("ham delay worst", lambda r: delay(r)),
        ("wave accepted by the host", lambda r: f"{r['wave_accepted']} / {r['wave']}"),
        ("wave filed as tickets (reached a handler)", lambda r: f"{r['wave_filed']} / {r['wave']}"),
        ("wave turned away (5xx)", lambda r: r["wave_rejected"]),
        ("wave accepted after ops' add + 2 s", lambda r: "-" if r["wave_accepted_after_ops_plus_2s"] is None
         else r["wave_accepted_after_ops_plus_2s"]),
        ("run length", lambda r: f"{r['seconds']:g} s"),
    ]
    out = ["| | " + " | ".join(f"({r['run']}) {r['label']}" for r in results) + " |",
           "|---|" + "---|" * len(results)]
    for name, f in rows:
        out.append(f"| {name} | " + " | ".join(str(f(r)) for r in results) + " |")
    return "\n".join(out)


def main():
    out = sys.argv[1]
    repo = sys.argv[sys.argv.index("--doc") + 1] if "--doc" in sys.argv else None
    with open(os.path.join(out, "results.json")) as f:
        meta = json.load(f)
    params = meta["params"]
    results = []
    for r in meta["runs"]:
        with open(os.path.join(out, f"run-{r['run']}.json")) as f:
            full = json.load(f)
        results.append(full)
        figure(full, params, os.path.join(out, f"run-{full['run']}.png"))
    p = params
    md = [f"Parameters: wave {p['wave']} messages over {p['wave_seconds']:g} s from {p['wave_start']:g} s, ham "
          f"{p['ham_rate']:g}/s for {p['ham_seconds']:g} s, handler {p['handler_mb']} MB for {p['handler_seconds']:g} s, "
          f"cgroup cap {p['cap_mb']} MB, ops after {p['ops_after']:g} s of wave, run d wave-action "
          f"{p['wave_action']}, deadline {p['deadline']:g} s per run; whole replay {p['total_seconds']} s.", "",
          table(results, params), ""]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))
    if repo:
        figs = os.path.join(repo, "docs", "incident")
        os.makedirs(figs, exist_ok=True)
        for r in results:
            shutil.copyfile(os.path.join(out, f"run-{r['run']}.png"), os.path.join(figs, f"run-{r['run']}.png"))
        doc = os.path.join(repo, "docs", "incident.md")
        with open(doc) as f:
            text = f.read()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            with open(doc, "w") as f:
                f.write(head + BEGIN + "\n" + "\n".join(md) + END + tail)


if __name__ == "__main__":
    main()
