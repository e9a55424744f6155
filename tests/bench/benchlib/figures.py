"""The figures of start cost, fetch throughput, completion to first byte, the cost of waiting
and scale: each runs its programs and returns its medians (the progress figure is apart)."""

import json
import os
import resource
import subprocess
import time

from benchlib import common
from benchlib.common import (API_KEY, BIG_BYTES, CLIENT_CPU, FETCH_TARGET, PINNED, SERVER_CPU,
                             SYSTEM_PLUGINS, Emulator, log, median, pin_to_client_cpu, run_json)


def client_module():
    """The client module next to the plugin, if this build has one. The other module there,
    libgstkirin-ledger-pg.module (libpq), is left out of every start figure on purpose: only
    a process whose journal is a postgresql:// URI loads it, as the client is loaded by
    every process that runs an element."""
    path = os.path.join(os.path.dirname(common.PLUGIN), "libgstkirin-client.module")
    return path if os.path.exists(path) else None


def load_plugin(path, env, module=None):
    return run_json([path] + ([module] if module else []), env, 60, program=common.LOAD)


def start_reference(reference=None):
    """The plugin to compare start cost with (`reference`, or the gst-plugins-good plugin
    whose stripped size is closest to ours: Debian's plugins are stripped; ours has debug
    info), and the stripped size of our code."""
    # The plugin's code is the plugin file and, when there is one, the client module it
    # loads on first use (gst/kirin/client/client.h): "the same size" counts both (not the ledger
    # module, which only server journals load: see client_module).
    module = client_module()
    our_size = 0
    for path in [common.PLUGIN] + ([module] if module else []):
        stripped = os.path.join(common.OUT_DIR, "stripped.so")
        subprocess.run(["strip", "-o", stripped, path], check=True)
        our_size += os.path.getsize(stripped)
        os.unlink(stripped)
    if not reference:
        good = subprocess.run(["dpkg", "-L", "gstreamer1.0-plugins-good"], capture_output=True,
                              text=True, check=True).stdout.split()
        candidates = [p for p in good if p.startswith(SYSTEM_PLUGINS + "/") and p.endswith(".so")]
        reference = min(candidates, key=lambda p: abs(os.path.getsize(p) - our_size))
    return os.path.abspath(reference), our_size


def figure_start(env, reps, reference, our_size):
    """gst-inspect-1.0 and gst_plugin_load_file, against the reference plugin (in the
    registry: bench_env was given it)."""
    module = client_module()
    ref_elements = load_plugin(reference, env)["elements"]
    ref_element = ref_elements[0]

    def inspect_seconds(element):
        start = time.perf_counter()
        subprocess.run(["gst-inspect-1.0", element], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start

    # Warm: the registry is up to date and the files are in the page cache.
    for _ in range(2):
        inspect_seconds("kirinextendsrc")
        inspect_seconds(ref_element)
    inspect = {"kirin": [], "ref": []}
    load = {"kirin": [], "ref": []}
    module_ms = []  # the client module, loaded later by the first element that runs
    for i in range(reps):
        # Alternate which goes first, so drift in the machine's load hits both alike.
        order = [("kirin", "kirinextendsrc", common.PLUGIN), ("ref", ref_element, reference)]
        if i % 2:
            order.reverse()
        for key, element, path in order:
            inspect[key].append(inspect_seconds(element))
            if key == "kirin" and module:
                result = load_plugin(path, env, module)
                module_ms.append(result["module_ms"])
            else:
                result = load_plugin(path, env)
            load[key].append(result["load_ms"])
    return {
        "reference_plugin": reference,
        "reference_plugin_bytes": os.path.getsize(reference),
        "reference_element": ref_element,
        "kirin_plugin_stripped_bytes": our_size,
        "reps": reps,
        "inspect_ms": {k: median(v) * 1000 for k, v in inspect.items()},
        "inspect_ratio": median(inspect["kirin"]) / median(inspect["ref"]),
        "load_ms": {k: median(v) for k, v in load.items()},
        "load_ratio": median(load["kirin"]) / median(load["ref"]),
        "client_module_load_ms": median(module_ms) if module_ms else None,
        "runs": {"inspect_s": inspect, "load_ms": load, "client_module_load_ms": module_ms},
    }


def children_cpu_s():
    """User and system CPU seconds of this script's children that have ended, so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def figure_fetch(env, nginx, reps):
    """The download phase on a 1 GiB file: the element, souphttpsrc ! fakesink, curl."""
    url = nginx.url("big.bin")
    # Each element run creates a task that completes at once with the static file's URL.
    emulator = Emulator(["--pending-ms", "0", "--processing-ms", "0"] +
                        ["--fault=task=url:" + url] * (reps + 1), env)
    try:
        def curl():
            out = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w",
                 "%{size_download} %{time_starttransfer} %{time_total}", url],
                capture_output=True, text=True, check=True,
                preexec_fn=pin_to_client_cpu).stdout.split()
            size, first, total = int(out[0]), float(out[1]), float(out[2])
            if size != BIG_BYTES:
                raise RuntimeError("curl got %d bytes" % size)
            return size / (total - first)

        def gst(source):
            args = ["fetch", "--source", source, "--url", url]
            if source == "element":
                args += ["--api-url", emulator.api_url, "--api-key", API_KEY]
            result = run_json(args, env, 300, pinned=True)
            if result["bytes"] != BIG_BYTES:
                raise RuntimeError("%s got %d bytes" % (source, result["bytes"]))
            return result["bytes_per_s"]

        runners = {"curl": curl, "souphttpsrc": lambda: gst("souphttpsrc"),
                   "element": lambda: gst("element")}
        for run in runners.values():  # warm page cache, registry and server
            run()
        rates = {name: [] for name in runners}
        cpu = {name: [] for name in runners}
        names = list(runners)
        for i in range(reps):
            # Rotate the order so no contender always runs right after another.
            for name in names[i % 3:] + names[:i % 3]:
                before = children_cpu_s()
                rates[name].append(runners[name]())
                cpu[name].append(children_cpu_s() - before)
                log("  fetch %d/%d %s: %.0f MB/s, %.2f s CPU" % (
                    i + 1, reps, name, rates[name][-1] / 1e6, cpu[name][-1]))
    finally:
        emulator.stop()
    # Runs of one round are close in time and share the machine's state, so the ratio is
    # taken per round, then the median of those.
    def round_ratio(reference):
        return median([e / r for e, r in zip(rates["element"], rates[reference])])

    return {
        "reps": reps,
        "bytes": BIG_BYTES,
        # The target: the element downloads as fast as the bare souphttpsrc it is made of.
        # curl's throughput and every CPU figure are reported without a target.
        "reference": "souphttpsrc",
        "target_vs_reference": FETCH_TARGET,
        "pinned": {"server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU} if PINNED else None,
        "median_bytes_per_s": {k: median(v) for k, v in rates.items()},
        "min_bytes_per_s": {k: min(v) for k, v in rates.items()},
        "max_bytes_per_s": {k: max(v) for k, v in rates.items()},
        "element_vs_curl": round_ratio("curl"),
        "element_vs_souphttpsrc": round_ratio("souphttpsrc"),
        "runs_bytes_per_s": rates,
        # CPU time of the whole client process (its start and end included), per run.
        "median_cpu_s": {k: median(v) for k, v in cpu.items()},
        "median_cpu_s_per_gib": {k: median(v) * (1 << 30) / BIG_BYTES for k, v in cpu.items()},
        "runs_cpu_s": cpu,
    }


def figure_first_byte(env, reps, callbacks):
    args = ["first-byte", "--reps", str(reps)]
    if callbacks:
        args += ["--callback", "yes"]
    result = run_json(args, env, 60 + reps * 40)
    runs = result["runs"]
    latency = [r["latency_ms"] for r in runs]
    reaction = [r["reaction_ms"] for r in runs]
    out = {"reps": reps, "callbacks": callbacks, "median_latency_ms": median(latency),
           "median_reaction_ms": median(reaction), "runs": runs}
    if callbacks:
        out["median_callback_arrival_ms"] = median([r["callback_arrival_ms"] for r in runs
                                                    if "callback_arrival_ms" in r])
        out["median_callback_to_first_buffer_ms"] = median(
            [r["callback_to_first_buffer_ms"] for r in runs if "callback_to_first_buffer_ms" in r])
    else:
        # The completion moments are spread over the interval; a single median of them would
        # swing by a tenth of the interval with the poll jitter. So each run is taken at the
        # middle of the interval it fell in: half that interval plus the element's reaction.
        at_mid = [r["interval_ms"] / 2 + r["reaction_ms"] for r in runs]
        bound = [r["interval_ms"] / 2 + 20 for r in runs]
        out["median_interval_ms"] = median([r["interval_ms"] for r in runs])
        out["median_latency_at_mid_interval_ms"] = median(at_mid)
        out["median_bound_ms"] = median(bound)
        out["ratio_to_bound"] = median([a / b for a, b in zip(at_mid, bound)])
    return out


def figure_wait(env, seconds, processes):
    """CPU and wake-ups of processes whose element waits on a task that stays pending. The
    processes run at once: they are idle, so they do not disturb each other."""
    emulator = Emulator(["--fault=task=stuck"] * processes, env)
    procs = []
    try:
        procs += [subprocess.Popen([common.BENCH, "wait", "--api-url", emulator.api_url,
                                    "--api-key", API_KEY, "--seconds", str(seconds)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for _ in range(processes)]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=seconds + 60)
            if proc.returncode != 0:
                log(err[-2000:])
                raise RuntimeError("kirin-bench wait failed")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:  # still running only when the run is being stopped early
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        emulator.stop()
    if not all(r["still_waiting"] for r in results):
        raise RuntimeError("a task stopped waiting during the wait figure")
    return {
        "processes": processes,
        "seconds": seconds,
        "median_cpu_ms": median([r["cpu_ms"] for r in results]),
        "median_wakeups_per_s": median([r["wakeups"] / r["seconds"] for r in results]),
        "median_polls": median([r["polls"] for r in results]),
        "runs": results,
    }


def figure_scale(env, nginx, small_sha256, count, reps, journal=None):
    results = []
    for i in range(reps):
        result = run_json(["scale", "--count", str(count), "--url", nginx.url("small.bin"),
                           "--sha256", small_sha256, "--sample-ms", "5000",
                           "--max-seconds", "300"] + (["--journal", journal] if journal else []),
                          env, 400)
        log("  scale %d/%d: %d identical, %.1f s to all waiting (half: %.1f s, 90 %%: %.1f s), "
            "%d new threads waiting, %.0f MB RSS; all downloading: %d new threads, %.0f MB RSS, "
            "%.1f s" % (
                i + 1, reps, result["identical"], result["seconds_to_all_waiting"],
                result.get("seconds_to_waiting_p50", -1), result.get("seconds_to_waiting_p90", -1),
                result["threads_waiting"] - result["threads_before"],
                result["rss_waiting_kb"] / 1024,
                result["completion_peak_threads"] - result["threads_before"],
                result["completion_peak_rss_kb"] / 1024, result["completion_seconds"]))
        results.append(result)
    return {
        "count": count,
        "reps": reps,
        "median_new_threads_waiting": median(
            [r["threads_waiting"] - r["threads_before"] for r in results]),
        # The same, one second into the wait: threads left over from creating the tasks
        # (GLib's idle pool threads) have mostly gone by then.
        "median_new_threads_after_1s": median(
            [int(r["threads_waiting_each_second"][1]) - r["threads_before"] for r in results
             if len(r["threads_waiting_each_second"]) > 1]),
        "median_rss_waiting_mb": median([r["rss_waiting_kb"] / 1024 for r in results]),
        "median_seconds_to_all_waiting": median([r["seconds_to_all_waiting"] for r in results]),
        "max_seconds_to_all_waiting": max(r["seconds_to_all_waiting"] for r in results),
        "min_identical": min(r["identical"] for r in results),
        "median_peak_threads": median([r["peak_threads"] for r in results]),
        "median_peak_rss_mb": median([r["peak_rss_kb"] / 1024 for r in results]),
        # The completion phase alone: from the first task completed to the last result
        # downloaded. New threads (over the count before the first element), peak RSS.
        "median_completion_new_threads": median(
            [r["completion_peak_threads"] - r["threads_before"] for r in results]),
        "median_completion_peak_rss_mb": median(
            [r["completion_peak_rss_kb"] / 1024 for r in results]),
        "median_peak_active_downloads": median([r["peak_active_downloads"] for r in results]),
        # souphttpsrc started at once: each runs a session thread of its own.
        "median_peak_http_sources": median([r["peak_started_http_sources"] for r in results]),
        "median_completion_seconds": median([r["completion_seconds"] for r in results]),
        "runs": results,
    }
