"""The progress figure: how late each polling policy notices a finished task, and at how
many polls, for every progress shape; and its rows of the table."""

import json
import statistics
import subprocess

from benchlib import common
from benchlib.common import log, median


# The client's; the growing schedule, twice (the difference between its two runs is the
# noise of the comparison: the same jitter draws, answers timed by the load); every
# poll-interval.
POLICIES = {"predict": "predict", "backoff": "backoff", "backoff-again": "backoff",
            "fixed": "fixed"}
SHAPES = ["linear", "steps", "none", "stall", "back"]
# How much later than the growing schedule's, in poll-intervals, predict's paired median
# delay may be for `none`, where both take the same decisions: the answers' timing under the
# load of four processes (tens of milliseconds per poll, up to 0.2 x interval over a task's
# polls between the two runs of the schedule).
NOISE_DELAY = 0.1


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[max(0, int(-(-fraction * len(ordered) // 1)) - 1)] if ordered else float("nan")


def figure_progress(env, per_shape, poll_interval_ms):
    """Delay from completion to the first request for the result, and polls per task, for
    each progress shape and each policy: one process per policy (KIRIN_BENCH_POLL_POLICY),
    all at once, each with its own emulator and the same task lengths."""
    procs = {}
    try:
        for policy, name in POLICIES.items():
            penv = dict(env)
            penv["KIRIN_BENCH_POLL_POLICY"] = name
            procs[policy] = subprocess.Popen(
                [common.PROGRESS, "--per-shape", str(per_shape),
                 "--poll-interval", str(poll_interval_ms)],
                env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runs = {}
        for policy, proc in procs.items():
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                log(err[-2000:])
                raise RuntimeError("kirin-bench-progress failed")
            runs[policy] = json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    summary = {}
    for policy, run in runs.items():
        if run["errors"] or any(t["delay_ms"] < 0 for t in run["tasks"]):
            raise RuntimeError("a task of the %s policy did not reach its result" % policy)
        for shape in SHAPES:
            tasks = [t for t in run["tasks"] if t["shape"] == shape]
            delays = [t["delay_ms"] / poll_interval_ms for t in tasks]
            summary.setdefault(shape, {})[policy] = {
                "tasks": len(tasks), "median_delay": median(delays),
                "p90_delay": percentile(delays, 0.9),
                "polls_per_task": statistics.mean([t["polls"] for t in tasks])}
    for shape in SHAPES:
        summary[shape]["predict"]["paired_delay_vs_backoff"] = paired_delay(
            runs, shape, poll_interval_ms)
    return {"per_shape": per_shape, "poll_interval_ms": poll_interval_ms, "shapes": summary,
            "runs": runs}


def paired_delay(runs, shape, poll_interval_ms):
    """The median over tasks of predict's delay less the growing schedule's for the same
    task (the n-th task of each process has the same length and jitter draws), the mean of
    its two runs, in units of poll-interval. A completion that lands within the answers'
    timing noise of a poll costs one run a whole wait more than another; the median of the
    differences is not moved by such a task, where the median of the delays is."""
    def delays(policy):
        return [t["delay_ms"] for t in runs[policy]["tasks"] if t["shape"] == shape]
    diffs = [p - (b + b2) / 2 for p, b, b2 in
             zip(delays("predict"), delays("backoff"), delays("backoff-again"))]
    return median(diffs) / poll_interval_ms


def polls_within_backoff(p, b, b2, per_shape):
    """Polls per task no more than the growing schedule's, give or take the difference between
    its own two runs, and at least one poll in one task: a completion within the answers'
    timing noise of a poll gets that poll in one run and the next one in another, as the
    two runs of the same schedule show."""
    key = "polls_per_task"
    return p[key] <= max(b[key], b2[key]) + max(abs(b[key] - b2[key]), 1.0 / per_shape)


def progress_rows(f, row):
    for shape, by_policy in f["shapes"].items():
        p, b, b2, x = (by_policy[k] for k in ("predict", "backoff", "backoff-again", "fixed"))
        cell = lambda r: "%.2f / %.2f, %.2f polls" % (r["median_delay"], r["p90_delay"],
                                                       r["polls_per_task"])
        polls_ok = polls_within_backoff(p, b, b2, f["per_shape"])
        if shape == "linear":
            ok = p["median_delay"] <= 0.1 and p["p90_delay"] <= 0.3 and polls_ok
            target = "median <= 0.1, p90 <= 0.3; polls <= backoff's"
        elif shape == "none":
            # The same decisions as the growing schedule: the paired delay is its noise.
            ok = polls_ok and p["paired_delay_vs_backoff"] <= NOISE_DELAY
            target = "polls <= backoff's; delay: paired median <= backoff's + %.2f" % NOISE_DELAY
        else:
            ok = polls_ok
            target = "polls <= backoff's"
        row("progress %s: delay median / p90 (x interval)" % shape,
            cell(p) + ", paired %+.2f" % p["paired_delay_vs_backoff"],
            "backoff %s (again: %s); fixed %s" % (cell(b), cell(b2), cell(x)),
            "%.2f" % (p["polls_per_task"] / b["polls_per_task"]), target, ok)
