"""The bench's ground: the build it measures, the environment every run gets, CPU pinning,
running kirin-bench, and the servers the figures use (nginx, kirin-emulator)."""

import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

# tests/bench/benchlib/common.py: four levels below the repository.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def use_build(build):
    """Takes the programs, the plugin and the output directory from the build directory
    `build` (--build-dir)."""
    global BUILD, BENCH, LOAD, PROGRESS, EMULATOR, PLUGIN, OUT_DIR
    BUILD = os.path.abspath(build)
    BENCH = os.path.join(BUILD, "tests", "bench", "kirin-bench")
    LOAD = os.path.join(BUILD, "tests", "bench", "kirin-bench-load")
    PROGRESS = os.path.join(BUILD, "tests", "bench", "kirin-bench-progress")
    EMULATOR = os.path.join(BUILD, "tests", "emulator", "kirin-emulator")
    PLUGIN = os.path.join(BUILD, "gst", "kirin", "libgstkirin.so")  # --plugin-dir changes it
    OUT_DIR = os.path.join(BUILD, "bench")


use_build(os.environ.get("KIRIN_BENCH_BUILD") or os.path.join(REPO, "build"))
SYSTEM_PLUGINS = "/usr/lib/x86_64-linux-gnu/gstreamer-1.0"
API_KEY = "test-key"

BIG_BYTES = 1 << 30  # the fetch figure's result
FETCH_TARGET = 0.95  # the element's throughput against souphttpsrc's, at least
SMALL_BYTES = 1 << 20  # each of the scale figure's results


def log(text):
    print(text, file=sys.stderr, flush=True)


def median(values):
    return statistics.median(values) if values else float("nan")


# ---- environment ----


# The installed plugins the bench uses: the sinks, souphttpsrc (the fetch figure's reference)
# and what the emulator renders results with (videotestsrc ! jpegenc ! qtmux ! filesink).
BENCH_PLUGINS = ["coreelements", "soup", "videotestsrc", "jpeg", "isomp4"]


def bench_env(extra_plugins=()):
    """The environment of everything the bench runs: a registry that holds the plugin of this
    build, BENCH_PLUGINS and `extra_plugins` (files), and nothing else the machine has."""
    env = dict(os.environ)
    # The plugin from this build only, in a registry of the bench's own.
    env["GST_PLUGIN_PATH_1_0"] = os.path.dirname(PLUGIN)
    env.pop("GST_PLUGIN_PATH", None)
    # The system plugins: a directory of links to exactly these (tests/make-plugin-dir).
    plugin_dir = os.path.join(OUT_DIR, "plugins")
    subprocess.run([os.path.join(REPO, "tests", "make-plugin-dir"), SYSTEM_PLUGINS, plugin_dir]
                   + BENCH_PLUGINS + list(extra_plugins), check=True)
    env["GST_PLUGIN_SYSTEM_PATH_1_0"] = plugin_dir
    env["GST_REGISTRY_1_0"] = os.path.join(OUT_DIR, "registry.bin")
    env["VTRIX_API_KEY"] = API_KEY
    # The journal of the bench's own runs, not the user's.
    env["XDG_CACHE_HOME"] = os.path.join(OUT_DIR, "cache-home")
    # Logging would cost time in exactly what is measured.
    env.pop("GST_DEBUG", None)
    env.pop("GST_TRACERS", None)
    return env


def prepare():
    subprocess.run(["bash", "-c", ". scripts/deps.sh && kirin_ensure_packages nginx-light curl"],
                   cwd=REPO, check=True)
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        subprocess.run(["meson", "setup", BUILD], cwd=REPO, check=True)
    subprocess.run(["meson", "compile", "-C", BUILD, "-j", "2"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    os.makedirs(OUT_DIR, exist_ok=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# For the fetch figure the server's worker runs on the first CPU and every client on the
# second, so that on a two-core machine they never take turns on one CPU.
SERVER_CPU, CLIENT_CPU = 0, 1
PINNED = (os.cpu_count() or 1) >= 2


def pin_to_client_cpu():
    if PINNED:
        os.sched_setaffinity(0, {CLIENT_CPU})


def run_json(args, env, timeout, program=None, pinned=False):
    """Runs a kirin-bench subcommand (or `program`) and returns its JSON line."""
    done = subprocess.run([program or BENCH] + args, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=pin_to_client_cpu if pinned else None)
    if done.returncode != 0:
        log(done.stderr[-2000:])
        raise RuntimeError("kirin-bench %s failed (%d)" % (args[0], done.returncode))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The element must come from the build under test, never from an installed copy.
    loaded = result.get("plugin", "")
    if loaded.endswith(".so") and os.path.realpath(loaded) != os.path.realpath(PLUGIN):
        raise RuntimeError("kirinextendsrc came from %s, not %s" % (loaded, PLUGIN))
    return result


class Nginx:
    """One static HTTP server on loopback, run in the foreground under this script."""

    def __init__(self, root):
        self.root = root
        self.proc = None
        self.port = None

    def start(self):
        for _ in range(3):  # a free port can be taken between the check and the bind
            self.port = free_port()
            conf = os.path.join(self.root, "nginx.conf")
            temp = os.path.join(self.root, "nginx-temp")
            os.makedirs(temp, exist_ok=True)
            affinity = "worker_cpu_affinity %s;" % format(1 << SERVER_CPU, "b") if PINNED else ""
            with open(conf, "w") as f:
                f.write(NGINX_CONF % {"root": self.root, "port": self.port, "temp": temp,
                                      "affinity": affinity})
            self.proc = subprocess.Popen(
                ["nginx", "-c", conf, "-p", self.root, "-e", os.path.join(self.root, "error.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait_for_port(self.port, 10):
                return self
            self.stop()
        raise RuntimeError("nginx did not start; see %s/error.log" % self.root)

    def url(self, name):
        return "http://127.0.0.1:%d/%s" % (self.port, name)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown of master and worker
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# One worker, as nginx is usually run on a small machine; sendfile, no access log.
NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
%(affinity)s
pid %(root)s/nginx.pid;
error_log %(root)s/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path %(temp)s;
  proxy_temp_path %(temp)s;
  fastcgi_temp_path %(temp)s;
  uwsgi_temp_path %(temp)s;
  scgi_temp_path %(temp)s;
  types { application/octet-stream bin; }
  server { listen 127.0.0.1:%(port)d; root %(root)s; }
}
"""


class Emulator:
    """The kirin-emulator binary with queued faults, stopped with SIGTERM."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen([EMULATOR, "--quiet"] + args, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        if "listening on " not in line:
            self.stop()
            raise RuntimeError("kirin-emulator did not start")
        self.api_url = line.split("listening on ")[1] + "/model/v1/generation"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_random_file(path, size):
    digest = hashlib.sha256()
    chunk = 16 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            data = os.urandom(min(chunk, left))
            digest.update(data)
            f.write(data)
            left -= len(data)
    os.chmod(path, 0o644)
    return digest.hexdigest()
