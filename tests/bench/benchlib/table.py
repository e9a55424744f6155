"""The table: one row per figure with its measure, reference, ratio, target and verdict, and
its printing."""

import os

from benchlib.common import FETCH_TARGET
from benchlib.progress import progress_rows


def rows(figures):
    out = []

    def row(name, measured, reference, ratio, target, ok):
        out.append({"figure": name, "measured": measured, "reference": reference,
                    "ratio": ratio, "target": target, "pass": ok})

    f = figures.get("fetch")
    if f:
        m = f["median_bytes_per_s"]
        # The target: parity with souphttpsrc, which the element downloads with.
        ratio = f["element_vs_souphttpsrc"]
        row("fetch throughput vs souphttpsrc", "%.0f MB/s" % (m["element"] / 1e6),
            "souphttpsrc %.0f MB/s" % (m["souphttpsrc"] / 1e6), "%.2f" % ratio,
            ">= %.2f" % FETCH_TARGET, ratio >= FETCH_TARGET)
        # curl and the CPU cost: reported, no target.
        row("fetch throughput vs curl", "%.0f MB/s" % (m["element"] / 1e6),
            "curl %.0f MB/s" % (m["curl"] / 1e6), "%.2f" % f["element_vs_curl"], "(report)", None)
        c = f.get("median_cpu_s_per_gib")
        if c:
            row("fetch CPU per GiB (whole process)", "%.2f s" % c["element"],
                "souphttpsrc %.2f s, curl %.2f s" % (c["souphttpsrc"], c["curl"]),
                "%.2f" % (c["element"] / c["souphttpsrc"]), "(report)", None)
    f = figures.get("first_byte_polling")
    if f:
        row("completion to first byte, polling",
            "%.0f ms at mid-interval (reaction %.1f ms; raw median %.0f ms)" % (
                f["median_latency_at_mid_interval_ms"], f["median_reaction_ms"],
                f["median_latency_ms"]),
            "interval/2 + 20 ms = %.0f ms" % f["median_bound_ms"], "%.3f" % f["ratio_to_bound"],
            "<= 1", f["ratio_to_bound"] <= 1)
    f = figures.get("first_byte_callback")
    if f:
        ratio = f["median_latency_ms"] / 50
        row("completion to first byte, callback",
            "%.1f ms (emulator's notice %.1f, element %.1f)" % (
                f["median_latency_ms"], f["median_callback_arrival_ms"],
                f["median_callback_to_first_buffer_ms"]),
            "50 ms", "%.2f" % ratio, "<= 1", ratio <= 1)
    f = figures.get("wait")
    if f:
        ratio = f["median_cpu_ms"] / 50
        row("cost of waiting %d s: CPU" % f["seconds"], "%.1f ms" % f["median_cpu_ms"],
            "50 ms", "%.2f" % ratio, "<= 1", ratio <= 1)
        # A busy loop shows as hundreds of wake-ups a second; a timer-driven wait as a few
        # per poll.
        wakeups = f["median_wakeups_per_s"]
        row("cost of waiting: wake-ups", "%.2f/s (%d polls)" % (wakeups, f["median_polls"]),
            "1 /s", "%.2f" % wakeups, "<= 1 (no busy loop)", wakeups <= 1)
    f = figures.get("progress")
    if f:
        progress_rows(f, row)
    f = figures.get("scale")
    if f:
        # One second into the wait: when the last element starts waiting, the call-async
        # threads that delivered the elements' first messages (their outboxes) are still
        # there, and they end within that second.
        threads = f["median_new_threads_after_1s"]
        row("scale %d: threads while all wait" % f["count"],
            "%d 1 s into the wait (%d as the last one started; all waiting %.1f s after the "
            "start)" % (threads, f["median_new_threads_waiting"],
                        f["median_seconds_to_all_waiting"]),
            "4",
            "%.2f" % (threads / 4), "<= 1", threads <= 4)
        slowest = f["max_seconds_to_all_waiting"]
        row("scale %d: slowest of %d runs to all waiting" % (f["count"], f["reps"]),
            "%.1f s" % slowest, "2 s", "%.2f" % (slowest / 2), "<= 1", slowest <= 2)
        rss = f["median_rss_waiting_mb"]
        row("scale %d: RSS while all wait" % f["count"], "%.0f MB" % rss, "100 MB",
            "%.2f" % (rss / 100), "< 1", rss < 100)
        # Every result downloading at once: reported, no target.
        row("scale %d: threads while all download" % f["count"],
            "%d (at most %d souphttpsrc started at once, %d between first byte and EOS)" % (
                f["median_completion_new_threads"], f["median_peak_http_sources"],
                f["median_peak_active_downloads"]),
            "-", "-", "(report)", None)
        row("scale %d: RSS while all download" % f["count"],
            "%.0f MB (all done in %.1f s)" % (f["median_completion_peak_rss_mb"],
                                              f["median_completion_seconds"]),
            "-", "-", "(report)", None)
        row("scale %d: identical outputs" % f["count"], "%d" % f["min_identical"],
            "%d" % f["count"], "%.3f" % (f["min_identical"] / f["count"]), "= 1",
            f["min_identical"] == f["count"])
    f = figures.get("start")
    if f:
        ref = "%s (%s)" % (os.path.basename(f["reference_plugin"]), f["reference_element"])
        row("start: gst-inspect-1.0", "%.0f ms" % f["inspect_ms"]["kirin"],
            "%.0f ms %s" % (f["inspect_ms"]["ref"], ref), "%.2f" % f["inspect_ratio"], "<= 1.2",
            f["inspect_ratio"] <= 1.2)
        module = f.get("client_module_load_ms")
        row("start: plugin load", "%.2f ms" % f["load_ms"]["kirin"] +
            (" (+%.1f ms client module at first use)" % module if module else ""),
            "%.2f ms %s" % (f["load_ms"]["ref"], ref), "%.2f" % f["load_ratio"], "<= 1.2",
            f["load_ratio"] <= 1.2)
    return out


def print_table(table):
    headers = ["figure", "measured", "reference", "ratio", "target", "pass"]
    cells = [[r["figure"], r["measured"], r["reference"], r["ratio"], r["target"],
              {True: "pass", False: "FAIL", None: "-"}[r["pass"]]] for r in table]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-|-".join("-" * w for w in widths))
    for c in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(c, widths)))
