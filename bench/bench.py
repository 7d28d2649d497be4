#!/usr/bin/env python3
"""Side-by-side benchmark of switchyard against nginx and HAProxy.

Run it through bench/run.sh (which installs the tools and cleans up even if
this process is killed).  Python 3 standard library only.

Arrangement (see /work/shared/bench/README.md): proxies and the upstream are
pinned to CPU 1, the load generator (wrk, h2load, the idle-connection script
and this orchestrator) to CPU 0; one worker per proxy; proxies interleaved
(A B C A B C ...); medians over the runs.
"""
import argparse
import datetime
import glob
import http.client
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# cargo's target directory, as cargo itself finds it
TARGET = os.path.join(REPO, os.environ.get("CARGO_TARGET_DIR") or "target")

PORT_UP, PORT_NGINX, PORT_HAPROXY, PORT_SY, PORT_SY_ADMIN = 9001, 9002, 9003, 9004, 9005
# --baseline-switchyard (old main) and the plugins section's two bench_gateway processes
PORT_BASE, PORT_BASE_ADMIN = 9006, 9007
PORT_PF, PORT_PF_ADMIN = 9008, 9009          # bench_gateway, plugin-free route
PORT_PL, PORT_PL_ADMIN = 9010, 9011          # bench_gateway, route with the no-op plugins
PORT_KA, PORT_KA_ADMIN = 9012, 9013          # bench_gateway, route with key-auth
PORT_KR, PORT_KR_ADMIN = 9014, 9015          # bench_gateway, key-auth + rate-limiting (local)
PORT_RR, PORT_RR_ADMIN = 9016, 9017          # bench_gateway, rate-limiting on Redis
PORT_PC, PORT_PC_ADMIN = 9018, 9019          # bench_gateway, proxy-cache (memory), hits
PORT_REDIS = 9020                            # the plugins section's own redis-server
ALL_PORTS = [PORT_UP, PORT_NGINX, PORT_HAPROXY, PORT_SY, PORT_SY_ADMIN, PORT_BASE, PORT_BASE_ADMIN,
             PORT_PF, PORT_PF_ADMIN, PORT_PL, PORT_PL_ADMIN, PORT_KA, PORT_KA_ADMIN,
             PORT_KR, PORT_KR_ADMIN, PORT_RR, PORT_RR_ADMIN, PORT_PC, PORT_PC_ADMIN, PORT_REDIS]
ALL_SECTIONS = ["rps", "latency", "bodies", "memory", "scaling", "reload", "plugins", "instructions"]
# execution order: memory first, so that "idle" is measured on fresh processes
EXEC_ORDER = ["memory", "rps", "latency", "bodies", "scaling", "reload", "plugins", "instructions"]
ALL_PROXIES = ["nginx", "haproxy", "switchyard"]
# the row of --baseline-switchyard in the sections that interleave it with switchyard
BASELINE = "switchyard baseline"
# the no-op plugins of examples/bench_gateway.rs, put on the plugins section's route
NOOP_PLUGINS = ["bench-noop-1", "bench-noop-2", "bench-noop-3"]
# the plugins section's key-auth route: the bundled plugin, Kong's default config
# (key_names [apikey]), one consumer with one key, which every request sends
KEYAUTH_PLUGIN = ("key-auth", "key_names: [apikey]")
KEYAUTH_CONSUMERS = ("consumers:\n- username: bench\n  keyauth_credentials:\n  - key: bench-key\n")
KEYAUTH_HEADER = ("apikey", "bench-key")
# rate-limiting with a limit so high that it never refuses: every request is counted and
# answered with its RateLimit-* headers. Locally (beside key-auth, counted per consumer) and
# on Redis (the harness's own redis-server; counted per client IP, no key-auth)
RL_LIMIT = 100000000
RL_LOCAL_PLUGIN = ("rate-limiting", "second: %d, policy: local, limit_by: consumer" % RL_LIMIT)
RL_REDIS_PLUGIN = ("rate-limiting", "second: %d, policy: redis, limit_by: ip, "
                   "redis: {host: 127.0.0.1, port: %d}" % (RL_LIMIT, PORT_REDIS))
# proxy-cache, memory strategy, Kong's defaults otherwise (GET/HEAD, 200/301/404,
# text/plain and application/json, 300 s); content_type is widened at run time if the
# upstream's `/` answers with another type (see Harness.cache_plugin)
CACHE_DEFAULT_TYPES = ("text/plain", "application/json")

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROXY_CPU = "1"
GEN_CPU = "0"
MIB = 1024 * 1024

ARGS = None
NPROC = "?"
BENCH = None          # scratch directory
STARTED = []          # every Popen we started (servers and clients)
LOG_T0 = time.time()


def log(msg):
    el = time.time() - LOG_T0
    sys.stderr.write("[%4d:%02d] %s\n" % (el // 60, el % 60, msg))
    sys.stderr.flush()


# ---------------------------------------------------------------- processes

def register(p, group):
    STARTED.append(p)
    try:
        with open(os.path.join(BENCH, "pids"), "a") as f:
            f.write("%s %d\n" % ("pgid" if group else "pid", p.pid))
    except OSError:
        pass


def spawn(argv, logpath, cpu=None, group=True, **kw):
    """Start a process (pinned with taskset when cpu is given)."""
    if cpu is not None:
        argv = ["taskset", "-c", cpu] + list(argv)
    lf = open(logpath, "ab")
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", lf)
    kw.setdefault("stderr", subprocess.STDOUT if kw["stdout"] is lf else lf)
    p = subprocess.Popen(argv, start_new_session=group, **kw)
    lf.close()
    register(p, group)
    return p


def kill_proc(p, group=True, grace=5.0):
    if p is None or p.poll() is not None:
        return
    try:
        if group:
            os.killpg(p.pid, signal.SIGTERM)
        else:
            p.terminate()
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            if group:
                os.killpg(p.pid, signal.SIGKILL)
            else:
                p.kill()
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def cleanup():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    for p in reversed(STARTED):
        if p.poll() is None:
            try:
                pg = os.getpgid(p.pid) == p.pid
            except ProcessLookupError:
                continue
            kill_proc(p, group=pg, grace=3)


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


def read_stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); ppid = field 4, utime = 14, stime = 15
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[12])


def proc_tree(root):
    """root and all its descendants (processes; threads are counted in the
    thread-group leader's /proc/PID/stat)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = read_stat(int(d))
        if st:
            children.setdefault(st[0], []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if os.path.exists("/proc/%d" % pid):
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def cpu_split(pids):
    """(utime + stime, stime) of the given processes, in clock ticks, from one read each."""
    tot = kernel = 0
    for pid in pids:
        st = read_stat(pid)
        if st:
            tot += st[1]
            kernel += st[2]
    return tot, kernel


def cpu_ticks(pids):
    return cpu_split(pids)[0]


def mem_kib(pids):
    """(sum of VmRSS, sum of PSS) in KiB over the given processes."""
    rss = pss = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def established_to(port):
    """Number of ESTABLISHED TCP sockets whose local port is `port` (server side)."""
    n = 0
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] == "01" and int(p[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except OSError:
            pass
    return n


def cache_model():
    """valgrind's cache options for this CPU: its L1d, and its L2 as the last level. The caches
    are found by their level and type, not by where sysfs happens to list them."""
    want = {("1", "Data"): "--D1", ("2", "Unified"): "--LL"}
    opts = []
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            level, kind, size, ways, line = (
                open(os.path.join(d, f)).read().strip()
                for f in ("level", "type", "size", "ways_of_associativity", "coherency_line_size"))
            flag = want.get((level, kind))
            if flag:
                kib = int(size[:-1]) * (1024 if size.endswith("M") else 1)
                opts.append("%s=%d,%s,%s" % (flag, kib * 1024, int(ways), int(line)))
        except (OSError, ValueError):
            pass  # valgrind's own guess, then
    return opts


def callgrind_totals(path):
    """The event totals of one callgrind dump: {"Ir": ..., "D1mr": ..., ...}."""
    events, totals = [], []
    with open(path) as fh:
        for l in fh:
            if l.startswith("events:"):
                events = l.split()[1:]
            elif l.startswith("totals:"):
                totals = [int(x) for x in l.split()[1:]]
    return dict(zip(events, totals))


def cpu_times(cpu=None):
    """The /proc/stat line of one CPU (or of all): (total ticks, steal ticks)."""
    key = "cpu" if cpu is None else "cpu%s" % cpu
    with open("/proc/stat") as f:
        for line in f:
            p = line.split()
            if p and p[0] == key:
                v = [int(x) for x in p[1:9]]
                return sum(v), v[7]
    return 0, 0


def steal_ticks():
    """Steal ticks so far: (all CPUs, the proxies' CPU)."""
    return cpu_times()[1], cpu_times(PROXY_CPU)[1]


def wait_until(fn, timeout, interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if fn():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return False


def http_get(port, path, timeout=3.0, method="GET", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, headers=dict(headers or {}))
        r = c.getresponse()
        body = r.read()
        return r.status, body
    finally:
        c.close()


def port_listening(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
        s.close()
        return True
    except OSError:
        return False


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return ""


def one_line(s, limit=200):
    s = " ".join(s.split())
    return s[:limit] + ("…" if len(s) > limit else "")


# ---------------------------------------------------------------- configs

UPSTREAM_CONF = r"""# Upstream origin: nginx, 1 worker, 127.0.0.1:9001
worker_processes 1;
daemon off;
pid $BENCH/upstream/nginx.pid;
error_log $BENCH/upstream/logs/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 9000; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    default_type text/plain;
    server {
        listen 127.0.0.1:9001 backlog=4096;
        root $BENCH/www;
        location = / { return 200 "hello"; }
        location = /1k { try_files /1k =404; }
        location = /1m { try_files /1m =404; }
        # added for the route-scaling and reload sections: /r0000.., /rnew
        location /r { return 200 "hello"; }
    }
}
"""

NGINX_HEAD = r"""# nginx reverse proxy, 1 worker, 127.0.0.1:9002 -> 127.0.0.1:9001 with upstream keepalive
worker_processes 1;
daemon off;
pid $BENCH/nginxproxy/nginx.pid;
error_log $BENCH/nginxproxy/logs/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 9000; }
http {
    access_log off;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    upstream origin {
        server 127.0.0.1:9001;
        keepalive 1024;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:9002 backlog=4096;
"""

NGINX_MAIN_LOCATION = r"""        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # variant "tuned": buffering on (nginx default) with 64 KiB buffers and no temp files
            proxy_buffering on;
            proxy_buffer_size 64k;
            proxy_buffers 8 64k;
            proxy_busy_buffers_size 128k;
            proxy_max_temp_file_size 0;
        }
    }
}
"""

# same proxy settings, set at server level and inherited by N prefix locations
NGINX_SCALE_SETTINGS = r"""        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering on;
        proxy_buffer_size 64k;
        proxy_buffers 8 64k;
        proxy_busy_buffers_size 128k;
        proxy_max_temp_file_size 0;
"""

HAPROXY_CONF = r"""# HAProxy 2.6, 1 thread, 127.0.0.1:9003 -> 127.0.0.1:9001 with connection reuse
global
    nbthread 1
    maxconn 9000
    pidfile $BENCH/haproxy.pid
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:9003
    default_backend be
backend be
    server origin 127.0.0.1:9001
"""


def sub(text):
    return text.replace("$BENCH", BENCH)


def scale_path(i):
    return "/r%04d" % i


def nginx_main_conf():
    return sub(NGINX_HEAD + NGINX_MAIN_LOCATION)


def nginx_scale_conf(n, extra=()):
    locs = ["        location %s { proxy_pass http://origin; }\n" % scale_path(i) for i in range(n)]
    locs += ["        location %s { proxy_pass http://origin; }\n" % p for p in extra]
    return sub(NGINX_HEAD + NGINX_SCALE_SETTINGS + "".join(locs) + "    }\n}\n")


def kong_yaml(routes, per_service=10):
    """routes: list of (route_name, path).  Grouped into services of
    `per_service` routes, all pointing at the upstream, strip_path false."""
    out = ['_format_version: "3.0"\n', "services:\n"]
    for s in range(0, len(routes), per_service):
        out.append("- name: svc-%05d\n  url: http://127.0.0.1:%d\n  routes:\n" % (s // per_service, PORT_UP))
        for name, path in routes[s:s + per_service]:
            out.append('  - name: %s\n    paths: ["%s"]\n    strip_path: false\n' % (name, path))
    return "".join(out)


def kong_main_yaml(n_prefix, plugins=(), extra=""):
    """n_prefix decoy prefix routes /k0.. then the catch-all '/' route that the
    benchmark requests match (the lowest-priority prefix: checked last), carrying
    `plugins` when given: names of plugins with an empty config, or (name, config)
    pairs with the config as one line of YAML flow-mapping content. `extra` is
    appended as top-level YAML (consumers)."""
    routes = [("k%d" % i, "/k%d" % i) for i in range(n_prefix)]
    out = kong_yaml(routes)
    out += ("- name: origin\n  url: http://127.0.0.1:%d\n  routes:\n"
            '  - name: r-last\n    paths: ["/"]\n    strip_path: false\n' % PORT_UP)
    if plugins:
        out += "    plugins:\n"
        for p in plugins:
            if isinstance(p, str):
                out += "    - name: %s\n" % p
            else:
                out += "    - name: %s\n      config: {%s}\n" % p
    return out + extra


def main_config(plugins=(), extra=""):
    """switchyard's main config: 100 Kong routes + 100 Ocelot routes (see bench/README.md)."""
    return {"kong.yaml": kong_main_yaml(99, plugins, extra), "ocelot.json": ocelot_json(100)}


def ocelot_json(n):
    routes = [{
        "UpstreamPathTemplate": "/o%d/{everything}" % i,
        "UpstreamHttpMethod": ["Get"],
        "DownstreamPathTemplate": "/{everything}",
        "DownstreamScheme": "http",
        "DownstreamHostAndPorts": [{"Host": "127.0.0.1", "Port": PORT_UP}],
    } for i in range(n)]
    return json.dumps({"Routes": routes, "GlobalConfiguration": {}}, indent=1)


def write_file(path, text, atomic=False):
    if atomic:
        tmp = os.path.join(BENCH, ".tmp-" + os.path.basename(path))
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    else:
        with open(path, "w") as f:
            f.write(text)


# ---------------------------------------------------------------- servers

class Server:
    """One proxy (or the upstream) under test."""

    def __init__(self, name, port):
        self.name = name
        self.port = port
        self.proc = None
        self.variant = None
        self.error = None
        self.note = None
        self.ready_s = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def pids(self):
        return proc_tree(self.proc.pid) if self.running() else []

    def stop(self):
        if self.proc is not None:
            kill_proc(self.proc, group=True)
            self.proc = None
            self.variant = None
        wait_until(lambda: not port_listening(self.port), 10)

    def _wait_ready(self, timeout, check, logpath):
        t0 = time.time()
        good = False
        deadline = t0 + timeout
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if check():
                    good = True
                    break
            except Exception:
                pass
            time.sleep(0.02)
        if not good:
            why = "exited (code %s)" % self.proc.returncode if self.proc.poll() is not None \
                else "not ready after %ds" % timeout
            self.error = "failed to start: %s; log: %s" % (why, one_line(tail(logpath, 6)))
            kill_proc(self.proc)
            self.proc = None
            return False
        self.ready_s = time.time() - t0
        self.error = None
        return True


class Nginx(Server):
    def __init__(self, name, port, role):
        super().__init__(name, port)
        self.role = role   # "upstream" or "nginxproxy"

    def conf_path(self):
        return os.path.join(BENCH, self.role + ".conf")

    def start(self, variant, conf_text, probe="/", timeout=60):
        if self.running() and self.variant == variant:
            return True
        self.stop()
        d = os.path.join(BENCH, self.role)
        os.makedirs(os.path.join(d, "logs"), exist_ok=True)
        write_file(self.conf_path(), conf_text)
        logpath = os.path.join(d, "logs", "stdout.log")
        self.proc = spawn(["nginx", "-e", os.path.join(d, "logs", "startup.log"), "-c", self.conf_path()],
                          logpath, cpu=PROXY_CPU)
        self.variant = variant
        if not self._wait_ready(timeout, lambda: http_get(self.port, probe, 1)[0] == 200,
                                os.path.join(d, "logs", "error.log")):
            self.variant = None
            return False
        return True

    def master_pid(self):
        return self.proc.pid


class HAProxy(Server):
    def start(self, variant="main", timeout=30):
        if self.running() and self.variant == variant:
            return True
        self.stop()
        cfg = os.path.join(BENCH, "haproxy.cfg")
        write_file(cfg, sub(HAPROXY_CONF))
        logpath = os.path.join(BENCH, "haproxy.log")
        self.proc = spawn(["haproxy", "-db", "-f", cfg], logpath, cpu=PROXY_CPU)
        self.variant = variant
        if not self._wait_ready(timeout, lambda: http_get(self.port, "/", 1)[0] == 200, logpath):
            self.variant = None
            return False
        return True


class Switchyard(Server):
    def __init__(self, name, port, binary, admin_port=PORT_SY_ADMIN, tag="sy", headers=()):
        super().__init__(name, port)
        self.binary = binary
        self.admin_port = admin_port
        self.tag = tag      # names its config dirs and logs in the scratch directory
        # (name, value) pairs every request to it carries (probes, wrk, h2load)
        self.headers = list(headers)

    def start(self, variant, files, probe="/", timeout=120):
        """files: {filename: text} written to a fresh config dir."""
        if self.running() and self.variant == variant:
            return True
        self.stop()
        cdir = os.path.join(BENCH, "%s-%s" % (self.tag, variant))
        shutil.rmtree(cdir, ignore_errors=True)
        os.makedirs(cdir)
        for fn, text in files.items():
            write_file(os.path.join(cdir, fn), text)
        self.config_dir = cdir
        logpath = os.path.join(BENCH, "%s-%s.log" % (self.tag, variant))
        self.logpath = logpath
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        self.proc = spawn([self.binary, "run", "--config-dir", cdir,
                           "--listen", "127.0.0.1:%d" % self.port,
                           "--admin-listen", "127.0.0.1:%d" % self.admin_port,
                           "--workers", "1"], logpath, cpu=PROXY_CPU, env=env)
        self.variant = variant

        def ready():
            return (http_get(self.admin_port, "/status/ready", 1)[0] == 200
                    and http_get(self.port, probe, 2, headers=self.headers)[0] == 200)
        if not self._wait_ready(timeout, ready, logpath):
            self.variant = None
            return False
        return True


# ---------------------------------------------------------------- load generators

UNIT_US = {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def parse_wrk(out):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    for pct, val, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M):
        r["p%s_us" % pct] = float(val) * UNIT_US[unit]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    return r


def gen_cpu_start():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_client(argv, timeout, during=None, during_interval=0.5):
    """Run a load generator pinned to the generator CPU, bounded in time.
    Returns (stdout, wall seconds, generator CPU fraction)."""
    c0 = gen_cpu_start()
    t0 = time.time()
    p = subprocess.Popen(["taskset", "-c", GEN_CPU] + argv, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    register(p, False)
    out_chunks = []
    deadline = t0 + timeout
    fd = p.stdout.fileno()
    next_sample = t0 + during_interval
    while True:
        if time.time() > deadline:
            p.kill()
            p.wait()
            out_chunks.append(b"\n[killed: time limit]\n")
            break
        rl, _, _ = select.select([fd], [], [], min(0.1, during_interval))
        if rl:
            chunk = os.read(fd, 65536)
            if not chunk:      # EOF: the generator has exited
                break
            out_chunks.append(chunk)
        if during and time.time() >= next_sample:
            during()
            next_sample = time.time() + during_interval
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    p.stdout.close()
    wall = time.time() - t0
    gen = (gen_cpu_start() - c0) / wall if wall > 0 else 0
    return b"".join(out_chunks).decode("utf-8", "replace"), wall, gen


QUIET = {"budget": 60.0, "runs": 0, "busy_runs": 0, "max_busy": 0.0, "waited": 0.0}


def cpu_busy_pct(interval=0.25):
    """Machine-wide CPU busy % (all CPUs) over `interval` seconds, from /proc/stat."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v), v[3] + v[4]
    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    return 100.0 * ((t1 - t0) - (i1 - i0)) / (t1 - t0) if t1 > t0 else 0.0


def wait_quiet(limit=10.0):
    """Before each measured run, check that nothing else keeps the machine busy
    (another build or test run disturbs the figures).  Waits for quiet up to
    15 s per run and 60 s over the whole benchmark, then goes on and counts
    the run as disturbed."""
    QUIET["runs"] += 1
    busy = cpu_busy_pct()
    if busy > limit:
        t0 = time.time()
        while busy > limit and time.time() - t0 < 15 and QUIET["waited"] + time.time() - t0 < QUIET["budget"]:
            busy = cpu_busy_pct(0.5)
        QUIET["waited"] += time.time() - t0
        if busy > limit:
            QUIET["busy_runs"] += 1
            log("warning: the machine is %.0f%% busy with other work before this run" % busy)
    QUIET["max_busy"] = max(QUIET["max_busy"], busy)
    return busy


def header_args(headers):
    """-H NAME: VALUE for wrk and h2load."""
    return [x for k, v in headers for x in ("-H", "%s: %s" % (k, v))]


def wrk(port, path, conns, duration, cpu_pids, up_pids=(), during=None, during_interval=0.5,
        headers=()):
    url = "http://127.0.0.1:%d%s" % (port, path)
    busy = wait_quiet()
    st0 = steal_ticks()
    t0, k0 = cpu_split(cpu_pids)
    u0 = cpu_ticks(up_pids)
    out, wall, gen = run_client(["wrk", "-t1", "-c%d" % conns, "-d%ds" % duration, "--latency",
                                 "--timeout", "10s"] + header_args(headers) + [url],
                                duration + 30, during=during,
                                during_interval=during_interval)
    t1, k1 = cpu_split(cpu_pids)
    st1 = steal_ticks()
    dt, dk = t1 - t0, k1 - k0
    du = cpu_ticks(up_pids) - u0
    r = parse_wrk(out)
    r["gen_cpu"] = gen
    r["bg_busy"] = busy
    r["steal"], r["steal_proxy_cpu"] = st1[0] - st0[0], st1[1] - st0[1]
    n = r.get("requests", 0)
    if n:
        r["cpu_us"] = dt * 1e6 / CLK_TCK / n
        r["kernel_us"] = dk * 1e6 / CLK_TCK / n
        if up_pids:
            r["up_cpu_us"] = du * 1e6 / CLK_TCK / n
    if "rps" not in r:
        r["error"] = one_line(out[-300:])
    return r


def h2load_fixed_rate(port, path, rate, duration, cpu_pids, clients=49, warm=1.0):
    """h2load --h1 paced at `rate` req/s total: `clients` connections, each
    paced with --rps rate/clients, connection starts staggered 1 ms apart
    (so that the clients' send times spread over the interval instead of
    arriving in bursts).  Latency percentiles come from --log-file;
    requests started in the first `warm` seconds are dropped."""
    logf = os.path.join(BENCH, "h2load-%d-%d.log" % (port, rate))
    try:
        os.unlink(logf)
    except OSError:
        pass
    n = int(rate * (duration + warm))
    url = "http://127.0.0.1:%d%s" % (port, path)
    busy = wait_quiet()
    t0 = cpu_ticks(cpu_pids)
    out, wall, gen = run_client(["h2load", "--h1", "-t1", "-c%d" % clients, "-r1", "--rate-period", "1ms",
                                 "--rps", "%.4f" % (rate / clients), "-n%d" % n, "--log-file", logf, url],
                                timeout=3 * (duration + warm) + 20)
    dt = cpu_ticks(cpu_pids) - t0
    r = {"gen_cpu": gen, "bg_busy": busy}
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    if not m:
        r["error"] = one_line(out[-300:])
        return r
    done, succeeded = int(m.group(3)), int(m.group(4))
    r["failed"] = done - succeeded
    if done:
        r["cpu_us"] = dt * 1e6 / CLK_TCK / done
    rows = []
    try:
        with open(logf) as f:
            for line in f:
                p = line.split()
                if len(p) >= 3:
                    rows.append((int(p[0]), int(p[1]), int(p[2])))
    except OSError:
        pass
    if not rows:
        r["error"] = "no h2load log"
        return r
    start = min(x[0] for x in rows) + warm * 1e6
    win = [x for x in rows if x[0] >= start]
    if len(win) < 10:
        r["error"] = "too few requests in window"
        return r
    lat = sorted(x[2] for x in win)
    r["p50_us"] = pct(lat, 50)
    r["p99_us"] = pct(lat, 99)
    span = (max(x[0] for x in win) - start) / 1e6
    r["achieved"] = len(win) / span if span > 0 else None
    r["non2xx"] = sum(1 for x in win if not 200 <= x[1] < 300)
    if "[killed: time limit]" in out:
        r["note"] = "h2load hit its time limit"
    return r


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(runs, keys=("rps", "cpu_us", "kernel_us", "up_cpu_us", "p50_us", "p99_us", "achieved", "gen_cpu")):
    s = {k: median_of(runs, k) for k in keys}
    s["non2xx"] = sum(r.get("non2xx", 0) for r in runs)
    s["socket_errors"] = sum(r.get("socket_errors", 0) for r in runs)
    s["failed"] = sum(r.get("failed", 0) for r in runs)
    s["runs"] = len([r for r in runs if "error" not in r])
    errs = [r["error"] for r in runs if "error" in r]
    if errs:
        s["error"] = errs[0]
    return s


# ---------------------------------------------------------------- the harness

class Harness:
    def __init__(self, args):
        self.args = args
        self.up = Nginx("upstream", PORT_UP, "upstream")
        self.nginx = Nginx("nginx", PORT_NGINX, "nginxproxy")
        self.haproxy = HAProxy("haproxy", PORT_HAPROXY)
        self.sy = Switchyard("switchyard", PORT_SY, args.switchyard)
        self.sy_status = None    # None = usable, else a reason string
        # --baseline-switchyard: a second build (old main), interleaved with switchyard
        self.base = None
        self.base_status = None
        if args.baseline_switchyard and "switchyard" in args.proxies:
            self.base = Switchyard(BASELINE, PORT_BASE, args.baseline_switchyard, PORT_BASE_ADMIN, "base")
        # the plugins section's gateway (examples/bench_gateway.rs)
        self.gw_status = None
        self.binaries = {}       # role -> {"src", "path", "sha", "mtime"}
        self.sy_main_note = None
        self.results = {}
        self.notes = []
        self.proxies = [p for p in ALL_PROXIES if p in args.proxies]

    # ---- setup
    def write_www(self):
        www = os.path.join(BENCH, "www")
        os.makedirs(www, exist_ok=True)
        with open(os.path.join(www, "1k"), "wb") as f:
            f.write(b"k" * 1024)
        with open(os.path.join(www, "1m"), "wb") as f:
            f.write(b"m" * MIB)

    def start_upstream(self):
        if not self.up.start("main", sub(UPSTREAM_CONF)):
            raise SystemExit("upstream nginx did not start: %s" % self.up.error)

    def find_binary(self, b, default, cargo_args, what):
        """A binary to measure: `b` if it exists; built with `cargo build --release
        cargo_args` when `b` is the default path and missing. Returns None when it is
        usable, else why not."""
        if os.path.isfile(b) and os.access(b, os.X_OK):
            return None
        cargo_toml = os.path.join(REPO, "Cargo.toml")
        if os.path.abspath(b) != os.path.abspath(default):
            return "not built (%s not found)" % b
        if self.args.no_build:
            return "not built (%s missing; --no-build given)" % b
        if not os.path.isfile(cargo_toml):
            return "not built (%s missing and no Cargo.toml in %s)" % (b, REPO)
        if not shutil.which("cargo"):
            return "not built (%s missing and cargo not found)" % b
        cmd = ["cargo", "build", "--release"] + cargo_args
        blog = os.path.join(BENCH, "cargo-build-%s.log" % what)
        log("%s missing: running %s in %s (log: %s)" % (b, " ".join(cmd), REPO, blog))
        try:
            with open(blog, "wb") as lf:
                rc = subprocess.run(cmd, cwd=REPO, stdout=lf, stderr=subprocess.STDOUT,
                                    timeout=1800).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        if rc != 0 or not os.path.isfile(b):
            return "not built (%s failed: %s)" % (" ".join(cmd), one_line(tail(blog, 3), 150))
        return None

    def check_switchyard_binary(self):
        a = self.args
        if "switchyard" not in self.proxies:
            return
        self.sy_status = self.find_binary(a.switchyard, os.path.join(TARGET, "release", "switchyard"),
                                          [], "switchyard")
        if self.sy_status:
            log("switchyard: " + self.sy_status)
        else:
            self.sy.binary = self.snapshot_binary(a.switchyard, "switchyard")
        if self.base:
            b = a.baseline_switchyard
            if os.path.isfile(b) and os.access(b, os.X_OK):
                self.base.binary = self.snapshot_binary(b, "baseline")
            else:
                self.base_status = "not found (%s)" % b
                log("%s: %s" % (BASELINE, self.base_status))
        if "plugins" in a.sections:
            self.gw_status = self.find_binary(
                a.plugin_switchyard, os.path.join(TARGET, "release", "examples", "bench_gateway"),
                ["--example", "bench_gateway"], "bench_gateway")
            if self.gw_status:
                log("bench_gateway: " + self.gw_status)
            else:
                self.gw_binary = self.snapshot_binary(a.plugin_switchyard, "bench_gateway")

    def snapshot_binary(self, b, role):
        """Run a private copy, so that a rebuild during the benchmark cannot
        mix two builds in one table. Returns the copy's path."""
        import hashlib
        dst = os.path.join(BENCH, "bin-" + role)
        shutil.copy2(b, dst)
        with open(dst, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()[:12]
        self.binaries[role] = {"src": b, "path": dst, "sha": sha, "mtime": os.path.getmtime(dst)}
        return dst

    def sy_usable(self):
        return "switchyard" in self.proxies and self.sy_status is None

    def base_usable(self):
        return self.base is not None and self.base_status is None

    # ---- proxy states
    def ensure_main(self, names):
        """Start the named proxies in their main configuration.  Returns a
        list of (label, port, server) for those that are up."""
        out = []
        for name in names:
            if name == "nginx":
                if self.nginx.start("main", nginx_main_conf()):
                    out.append(("nginx", PORT_NGINX, self.nginx))
                else:
                    log("nginx: " + str(self.nginx.error))
            elif name == "haproxy":
                if self.haproxy.start("main"):
                    out.append(("haproxy", PORT_HAPROXY, self.haproxy))
                else:
                    log("haproxy: " + str(self.haproxy.error))
            elif name == "switchyard" and self.sy_usable():
                if self.start_sy_main():
                    out.append(("switchyard", PORT_SY, self.sy))
                if self.base_usable():
                    if self.start_base_main():
                        out.append((BASELINE, PORT_BASE, self.base))
        return out

    def start_base_main(self):
        """The baseline build in the same main configuration as switchyard."""
        if self.sy_main_note == "kong-only":
            ok = self.base.start("main-kong", {"kong.yaml": kong_main_yaml(199)})
        else:
            ok = self.base.start("main", main_config())
        if not ok:
            self.base_status = self.base.error
            log("%s: %s" % (BASELINE, self.base.error))
        return ok

    def start_sy_main(self):
        if self.sy.running() and self.sy.variant in ("main", "main-kong"):
            return True
        if self.sy_main_note == "failed":
            return False
        if self.sy_main_note is None or self.sy_main_note == "kong+ocelot":
            ok = self.sy.start("main", main_config())
            if ok:
                # does it serve the Ocelot routes, or only accept the file?
                try:
                    st, body = http_get(PORT_SY, "/o99/1k", 5)
                except Exception as e:
                    st, body = type(e).__name__, b""
                if st == 200 and len(body) == 1024:
                    self.sy_main_note = "kong+ocelot"
                    return True
                err1 = "it started but does not serve the Ocelot routes: GET /o99/1k answered %s" % st
                self.sy.stop()
            else:
                err1 = self.sy.error
            log("switchyard with kong.yaml + ocelot.json: %s; retrying with 200 Kong routes" % err1)
            ok = self.sy.start("main-kong", {"kong.yaml": kong_main_yaml(199)})
            if ok:
                self.sy_main_note = "kong-only"
                self.notes.append("switchyard with 100 Kong + 100 Ocelot routes: %s. Its main figures use "
                                  "200 Kong routes instead." % err1)
                return True
            self.sy_main_note = "failed"
            self.sy_status = self.sy.error
            log("switchyard: " + self.sy.error)
            return False
        ok = self.sy.start("main-kong", {"kong.yaml": kong_main_yaml(199)})
        if not ok:
            self.sy_status = self.sy.error
        return ok

    def verify(self, targets, paths, fatal=True):
        """Check every target answers 200 with the expected body size; drop the broken ones."""
        sizes = {"/": 5, "/1k": 1024, "/1m": MIB}
        good = []
        for t in targets:
            bad = None
            for p in paths:
                try:
                    st, body = http_get(t[1], p, 5, headers=getattr(t[2], "headers", None))
                except Exception as e:
                    bad = "%s: %s" % (p, e)
                    break
                if st != 200:
                    bad = "%s answered %d" % (p, st)
                    break
                if p in sizes and len(body) != sizes[p]:
                    bad = "%s body %d bytes, expected %d" % (p, len(body), sizes[p])
                    break
            if bad:
                log("%s: sanity check failed: %s" % (t[0], bad))
                self.notes.append("%s failed the sanity check (%s) and was skipped in that section." % (t[0], bad))
                if t[0] == "switchyard" and fatal:
                    self.sy_status = "failed sanity check: " + bad
                if t[0] == BASELINE and fatal:
                    self.base_status = "failed sanity check: " + bad
            else:
                good.append(t)
        return good

    def warm(self, targets, path="/", conns=50, seconds=1):
        for label, port, srv in targets:
            run_client(["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "http://127.0.0.1:%d%s" % (port, path)],
                       seconds + 20)

    def stop_extra(self):
        """Stop the baseline build (the scaling and reload sections measure switchyard alone)."""
        if self.base is not None:
            self.base.stop()

    def missing_rows(self, baseline=True):
        """Rows for proxies that were requested but could not be measured."""
        rows = []
        if "switchyard" in self.proxies and self.sy_status:
            rows.append(("switchyard", self.sy_status))
        if baseline and self.base is not None and self.base_status:
            rows.append((BASELINE, self.base_status))
        return rows

    # ---- sections
    def sec_rps(self):
        a = self.args
        targets = self.verify(self.ensure_main(self.proxies), ["/"])
        if not a.no_baseline:
            targets.append(("upstream alone (no proxy)", PORT_UP, None))
        self.warm(targets, seconds=2)
        res = {}
        for tname, conns in (("c50", 50), ("c256", 256)):
            for r in range(a.runs):
                for label, port, srv in targets:
                    if srv is None and (conns != 50 or r > 0):
                        continue   # the baseline: c50 only, one run
                    log("rps %s run %d/%d: %s" % (tname, r + 1, a.runs, label))
                    cpu_pids = (srv or self.up).pids()
                    up_pids = self.up.pids() if srv else ()
                    x = wrk(port, "/", conns, a.duration, cpu_pids, up_pids)
                    res.setdefault(label, {}).setdefault(tname, []).append(x)
        self.results["rps"] = {l: {t: summarize(v) for t, v in d.items()} for l, d in res.items()}
        self.results["rps_raw"] = res

    def sec_latency(self):
        a = self.args
        targets = self.verify(self.ensure_main(self.proxies), ["/"])
        if not a.no_baseline:
            targets.append(("upstream alone (no proxy)", PORT_UP, self.up))
        self.warm(targets)
        res = {}
        for rate in a.rates:
            for r in range(a.runs):
                for label, port, srv in targets:
                    if srv is self.up and r > 0:
                        continue   # the baseline: one run
                    log("latency %d req/s run %d/%d: %s" % (rate, r + 1, a.runs, label))
                    x = h2load_fixed_rate(port, "/", rate, a.duration, srv.pids())
                    res.setdefault(label, {}).setdefault(str(rate), []).append(x)
        self.results["latency"] = {l: {t: summarize(v) for t, v in d.items()} for l, d in res.items()}
        self.results["latency_raw"] = res

    def sec_bodies(self):
        a = self.args
        targets = self.verify(self.ensure_main(self.proxies), ["/", "/1k", "/1m"])
        paths = [("1k", "/1k", 1024), ("1m", "/1m", MIB)]
        have5 = "rps" in self.results
        if not have5:
            paths.insert(0, ("5", "/", 5))
        self.warm(targets, "/1k")
        res = {}
        for bname, path, size in paths:
            for r in range(a.runs):
                for label, port, srv in targets:
                    log("bodies %s run %d/%d: %s" % (path, r + 1, a.runs, label))
                    x = wrk(port, path, 50, a.duration, srv.pids(), self.up.pids())
                    if x.get("rps") is not None:
                        x["mibps"] = x["rps"] * size / MIB
                    res.setdefault(label, {}).setdefault(bname, []).append(x)
        out = {l: {b: summarize(v, ("rps", "mibps", "cpu_us", "up_cpu_us", "p50_us", "p99_us", "gen_cpu"))
                   for b, v in d.items()} for l, d in res.items()}
        if have5:
            for label, d in self.results["rps"].items():
                if label in out and "c50" in d:
                    s = dict(d["c50"])
                    s["mibps"] = s["rps"] * 5 / MIB if s.get("rps") else None
                    out[label]["5"] = s
        self.results["bodies"] = out

    def sec_memory(self):
        a = self.args
        targets = self.verify(self.ensure_main(self.proxies), ["/"])
        res = {}
        script = os.path.join(HERE, "idle_conns.py")
        for label, port, srv in targets:
            log("memory: %s" % label)
            m = {}
            # a little warm-up traffic, then settle
            run_client(["wrk", "-t1", "-c10", "-d1s", "http://127.0.0.1:%d/" % port], 20)
            time.sleep(1.0)
            m["idle_rss"], m["idle_pss"] = mem_kib(srv.pids())
            # 1,000 idle keep-alive client connections
            p = subprocess.Popen(["taskset", "-c", GEN_CPU, sys.executable, script, "--port", str(port),
                                  "--conns", str(a.idle_conns), "--hold", "120"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            register(p, False)
            line = b""
            deadline = time.time() + 60
            while time.time() < deadline and p.poll() is None:
                rl, _, _ = select.select([p.stdout], [], [], 0.2)
                if rl:
                    line = p.stdout.readline()
                    break
            opened = None
            mm = re.match(rb"READY (\d+)", line or b"")
            if mm:
                opened = int(mm.group(1))
                time.sleep(1.0)
                m["conns_rss"], m["conns_pss"] = mem_kib(srv.pids())
                m["conns_open"] = opened
                m["conns_held"] = held = established_to(port)
                if held < opened * 0.95:
                    self.notes.append("%s: of %d idle connections opened only %d were still open when memory "
                                      "was read (it closes idle connections early); the per-connection figure "
                                      "is understated." % (label, opened, held))
                if opened:
                    m["per_conn_rss"] = (m["conns_rss"] - m["idle_rss"]) / opened
                    m["per_conn_pss"] = (m["conns_pss"] - m["idle_pss"]) / opened
                if opened < a.idle_conns:
                    self.notes.append("%s: only %d of %d idle connections could be opened." % (
                        label, opened, a.idle_conns))
            else:
                err = p.stderr.read1(400) if p.poll() is not None else b""
                self.notes.append("%s: the idle-connection script did not report ready (%s)." % (
                    label, one_line(err.decode("utf-8", "replace"))))
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            time.sleep(0.5)
            # under load: peak while wrk -c256 runs
            peak = [0, 0]

            def sample():
                rss, pss = mem_kib(srv.pids())
                peak[0] = max(peak[0], rss)
                peak[1] = max(peak[1], pss)
            x = wrk(port, "/", 256, a.mem_load_s, srv.pids(), during=sample)
            m["load_rss"], m["load_pss"] = peak
            m["load_rps"] = x.get("rps")
            res[label] = m
        self.results["memory"] = res

    def sec_scaling(self):
        a = self.args
        want_nginx = "nginx" in self.proxies and not a.no_nginx_scaling
        want_sy = self.sy_usable()
        if not (want_nginx or want_sy):
            self.results["scaling"] = {}
            return
        # free memory and CPU 1 of proxies not used here
        self.haproxy.stop()
        self.stop_extra()
        res = {}
        for n in a.route_counts:
            first, last = scale_path(0), scale_path(n - 1)
            targets = []
            if want_nginx:
                log("scaling: nginx with %d locations" % n)
                if self.nginx.start("scale-%d" % n, nginx_scale_conf(n), probe=first):
                    targets.append(("nginx", PORT_NGINX, self.nginx))
                    res.setdefault("nginx", {}).setdefault(n, {})["ready_s"] = self.nginx.ready_s
                else:
                    self.notes.append("nginx with %d locations did not start: %s" % (n, self.nginx.error))
            if want_sy:
                log("scaling: switchyard with %d routes" % n)
                routes = [("r%04d" % i, scale_path(i)) for i in range(n)]
                if self.sy.start("scale-%d" % n, {"kong.yaml": kong_yaml(routes)}, probe=first, timeout=180):
                    targets.append(("switchyard", PORT_SY, self.sy))
                    res.setdefault("switchyard", {}).setdefault(n, {})["ready_s"] = self.sy.ready_s
                else:
                    res.setdefault("switchyard", {}).setdefault(n, {})["error"] = self.sy.error
                    log("switchyard: " + str(self.sy.error))
            targets = self.verify(targets, [first, last], fatal=False) if targets else []
            self.warm(targets, last)
            raw = {}
            for r in range(a.runs):
                for which, path in (("first", first), ("last", last)):
                    for label, port, srv in targets:
                        log("scaling %d routes, %s route, run %d/%d: %s" % (n, which, r + 1, a.runs, label))
                        x = wrk(port, path, 50, a.scaling_duration, srv.pids(), self.up.pids())
                        raw.setdefault(label, {}).setdefault(which, []).append(x)
            for label, port, srv in targets:
                d = res.setdefault(label, {}).setdefault(n, {})
                for which, runs in raw.get(label, {}).items():
                    d[which] = summarize(runs)
                d["rss"], d["pss"] = mem_kib(srv.pids())
        self.results["scaling"] = res

    def sec_reload(self):
        a = self.args
        n = a.reload_routes
        rows = []
        self.haproxy.stop()
        last = scale_path(n - 1)
        how_write = "rewritten in place" if a.reload_inplace else "replaced (rename)"
        self.stop_extra()
        if self.sy_usable():
            log("reload: switchyard with %d routes" % n)
            routes = [("r%04d" % i, scale_path(i)) for i in range(n)]
            self.sy.stop()   # fresh process and config dir
            if self.sy.start("scale-%d" % n, {"kong.yaml": kong_yaml(routes)}, probe=last, timeout=180):
                target = os.path.join(self.sy.config_dir, "kong.yaml")
                routes2 = routes + [("rnew", "/rnew")]
                routes3 = routes2 + [("radmin", "/radmin")]

                # The YAML is rendered before the clock starts: the figure is the gateway's,
                # from the moment the new file is in place, not Python's string building.
                text2, text3 = kong_yaml(routes2), kong_yaml(routes3)

                def write_watch(written):
                    write_file(target, text2, atomic=not a.reload_inplace)
                    written()

                r = self.reload_run(PORT_SY, self.sy, last, "/rnew", write_watch)
                r.update(proxy="switchyard", how="kong.yaml %s; automatic reload (file watcher)" % how_write)
                rows.append(r)
                post = {}

                def write_post(written):
                    write_file(target, text3, atomic=not a.reload_inplace)
                    written()
                    t0 = time.time()
                    try:
                        post["status"] = http_get(PORT_SY_ADMIN, "/reload", a.reload_timeout, "POST")[0]
                    except Exception as e:
                        post["status"] = type(e).__name__
                    post["s"] = time.time() - t0

                if self.sy.running():
                    log("reload: switchyard, POST /reload")
                    r = self.reload_run(PORT_SY, self.sy, last, "/radmin", write_post)
                    r.update(proxy="switchyard", how="kong.yaml %s, then `POST /reload` on the admin listener "
                             "(answered %s after %s)" % (how_write, post.get("status"),
                                                          "%.3f s" % post["s"] if "s" in post else "—"))
                    rows.append(r)
                # the next user of this config dir must not see the extra routes
                self.sy.stop()
            else:
                rows.append({"proxy": "switchyard", "how": "", "error": self.sy.error})
        if "nginx" in self.proxies and not a.no_nginx_scaling:
            log("reload: nginx with %d locations" % n)
            if self.nginx.start("scale-%d" % n, nginx_scale_conf(n), probe=last):
                conf = nginx_scale_conf(n, ["/rnew"])

                def write_nginx(written):
                    write_file(self.nginx.conf_path(), conf, atomic=True)
                    written()
                    os.kill(self.nginx.master_pid(), signal.SIGHUP)
                r = self.reload_run(PORT_NGINX, self.nginx, last, "/rnew", write_nginx)
                r.update(proxy="nginx", how="nginx.conf replaced (rename), then SIGHUP to the master")
                rows.append(r)
                self.nginx.stop()
            else:
                rows.append({"proxy": "nginx", "how": "", "error": self.nginx.error})
        self.results["reload"] = rows

    def sec_plugins(self):
        """What a plugin chain costs: the bench_gateway build (examples/bench_gateway.rs: the
        switchyard command line plus three no-op plugins) in the main configuration several
        times, each with a different chain on the route the requests match: (a) none, (b) the
        three no-op plugins, (c) the bundled key-auth plugin and one consumer, whose key every
        request sends, (d) key-auth + rate-limiting (policy local, a limit that never refuses),
        (e) rate-limiting on Redis (the harness's own redis-server) and (f) proxy-cache
        (memory), every measured request a hit; and the baseline build (--baseline-switchyard,
        old main) on the plugin-free route. All stay up side by side and are interleaved (old,
        new, new + plugins, ..., old, ...) for `--runs` runs of wrk -c50; then each runs alone
        under callgrind (h2load -c10)."""
        res = self.results["plugins"] = {"rows": [], "notes": []}
        if self.gw_status:
            res["error"] = "bench_gateway " + self.gw_status
            return
        self.plugin_servers = []
        self.redis = None
        try:
            self._plugins(res)
        finally:
            # every gateway and the redis-server this section started, on success or failure
            for srv in self.plugin_servers:
                if srv is not self.base:
                    srv.stop()
            self.stop_redis()

    # ---- the plugins section's redis-server
    def start_redis(self):
        """Starts `redis-server` on PORT_REDIS, pinned with the proxies, without persistence.
        Returns None when it is up, else why not."""
        if not shutil.which("redis-server"):
            return "redis-server not installed"
        d = os.path.join(BENCH, "redis")
        os.makedirs(d, exist_ok=True)
        logpath = os.path.join(d, "redis.log")
        self.redis = spawn(["redis-server", "--port", str(PORT_REDIS), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no", "--dir", d, "--daemonize", "no"],
                           logpath, cpu=PROXY_CPU)
        if not wait_until(lambda: self.redis.poll() is not None
                          or self.redis_cmd("PING").strip() == "PONG", 20, 0.1) \
                or self.redis.poll() is not None:
            why = "redis-server did not start: %s" % one_line(tail(logpath, 4))
            self.stop_redis()
            return why
        return None

    def stop_redis(self):
        if getattr(self, "redis", None) is not None:
            kill_proc(self.redis, group=True)
            self.redis = None

    @staticmethod
    def redis_cmd(*args):
        """One command to the section's redis-server (one connection): its reply as text.
        With redis-cli when installed, else as an inline command over a socket."""
        if shutil.which("redis-cli"):
            return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(PORT_REDIS)] + list(args),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=10).stdout.decode(errors="replace")
        s = socket.create_connection(("127.0.0.1", PORT_REDIS), timeout=5)
        try:
            s.sendall((" ".join(args) + "\r\n").encode())
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                first, _, rest = buf.partition(b"\r\n")
                if first[:1] in (b"+", b"-", b":") or (
                        first[:1] == b"$" and len(rest) >= int(first[1:]) + 2):
                    break
            first, _, rest = buf.partition(b"\r\n")
            return (rest[:int(first[1:])] if first[:1] == b"$" else first[1:]).decode(errors="replace")
        finally:
            s.close()

    def redis_info(self, section):
        """`INFO section` as {field: value}."""
        out = {}
        for line in self.redis_cmd("INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.strip().split(":", 1)
                out[k] = v
        return out

    def cache_plugin(self):
        """proxy-cache (memory) for the upstream's `/`: Kong's defaults when they cache its
        content type, else `content_type` set to it. Returns (plugin, upstream's type)."""
        ct = ""
        try:
            c = http.client.HTTPConnection("127.0.0.1", PORT_UP, timeout=5)
            c.request("GET", "/")
            r = c.getresponse()
            r.read()
            ct = r.getheader("Content-Type") or ""
            c.close()
        except Exception:
            pass
        norm = ct.replace(" ", "").lower()
        if not ct or norm in CACHE_DEFAULT_TYPES:
            return ("proxy-cache", "strategy: memory"), ct
        return ("proxy-cache", 'strategy: memory, content_type: ["%s"]' % ct.replace('"', '')), ct

    @staticmethod
    def curl(port, headers=()):
        """GET / with curl: (status as text, {lower-case header name: value})."""
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "5"]
            + header_args(headers) + ["http://127.0.0.1:%d/" % port],
            stdout=subprocess.PIPE, timeout=10).stdout.decode(errors="replace")
        lines = out.splitlines()
        status = lines[0].split()[1] if lines and len(lines[0].split()) > 1 else "no answer"
        hdrs = {}
        for l in lines[1:]:
            if ":" in l:
                k, v = l.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        return status, hdrs

    def _plugins(self, res):
        a = self.args
        self.haproxy.stop()
        st0, busy0, t0 = steal_ticks(), QUIET["busy_runs"], time.time()
        pf = Switchyard("new, plugin-free route", PORT_PF, self.gw_binary, PORT_PF_ADMIN, "gw-free")
        pl = Switchyard("new, %d no-op plugins" % len(NOOP_PLUGINS), PORT_PL, self.gw_binary,
                        PORT_PL_ADMIN, "gw-noop")
        ka = Switchyard("new, key-auth (1 consumer)", PORT_KA, self.gw_binary, PORT_KA_ADMIN,
                        "gw-keyauth", headers=[KEYAUTH_HEADER])
        kr = Switchyard("new, key-auth + rate-limiting (local)", PORT_KR, self.gw_binary, PORT_KR_ADMIN,
                        "gw-keyauth-rl", headers=[KEYAUTH_HEADER])
        rr = Switchyard("new, rate-limiting (redis)", PORT_RR, self.gw_binary, PORT_RR_ADMIN, "gw-rl-redis")
        pc = Switchyard("new, proxy-cache hit (memory)", PORT_PC, self.gw_binary, PORT_PC_ADMIN, "gw-cache")
        cache_plugin, up_ct = self.cache_plugin()
        res["cache_config"] = cache_plugin[1]
        res["upstream_content_type"] = up_ct
        specs = []     # (key, server, files)
        if self.base is not None:
            if self.base_usable():
                specs.append(("old", self.base, main_config()))
            else:
                res["notes"].append("old main: %s" % self.base_status)
        else:
            res["notes"].append("no --baseline-switchyard given: no old-main row.")
        specs += [("new", pf, main_config()), ("new_plugins", pl, main_config(NOOP_PLUGINS)),
                  ("new_keyauth", ka, main_config([KEYAUTH_PLUGIN], KEYAUTH_CONSUMERS)),
                  ("new_keyauth_rl", kr, main_config([KEYAUTH_PLUGIN, RL_LOCAL_PLUGIN], KEYAUTH_CONSUMERS)),
                  ("new_rl_redis", rr, main_config([RL_REDIS_PLUGIN])),
                  ("new_cache", pc, main_config([cache_plugin]))]
        want_plugins = {"new_plugins": NOOP_PLUGINS, "new_keyauth": [KEYAUTH_PLUGIN[0]],
                        "new_keyauth_rl": sorted([KEYAUTH_PLUGIN[0], RL_LOCAL_PLUGIN[0]]),
                        "new_rl_redis": [RL_REDIS_PLUGIN[0]], "new_cache": [cache_plugin[0]]}
        targets = []
        for key, srv, files in specs:
            if key == "new_rl_redis":
                why = self.start_redis()
                if why:
                    res["rows"].append({"key": key, "label": srv.name, "error": "not measured: " + why})
                    log("plugins: %s: not measured: %s" % (srv.name, why))
                    continue
            self.plugin_servers.append(srv)
            if srv.start("main" if key == "old" else "plugins", files):
                targets.append((key, srv))
                res["rows"].append({"key": key, "label": srv.name})
            else:
                res["rows"].append({"key": key, "label": srv.name, "error": srv.error})
                log("plugins: %s: %s" % (srv.name, srv.error))
        rowof = lambda k: next(r for r in res["rows"] if r["key"] == k)
        # the chains really are what the rows say: `config` prints the loaded model with every
        # plugin and its route, and `check` that no route is closed (every plugin is served)
        for key, srv in targets:
            if key == "old":
                continue
            row = rowof(key)
            try:
                cfg = subprocess.run([srv.binary, "config", "--config-dir", srv.config_dir],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60).stdout
                found = [p["name"] for p in json.loads(cfg)["kong"]["plugins"] if p.get("route") == "r-last"]
                chk = subprocess.run([srv.binary, "check", "--config-dir", srv.config_dir],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     timeout=60).stdout.decode(errors="replace")
            except Exception as e:
                row["error"] = "could not read the loaded config: %s" % e
                continue
            want = want_plugins.get(key, [])
            row["route_plugins"] = found
            if sorted(found) != want:
                row["error"] = "`config` shows plugins %s on the route, expected %s" % (found, want)
            elif " 0 closed route(s)" not in chk:
                row["error"] = "`check`: %s" % one_line(chk, 200)
        good = [t for t in targets if "error" not in rowof(t[0])]
        good = [(k, srv) for (k, srv) in good
                if self.verify([(srv.name, srv.port, srv)], ["/"], fatal=False)]
        for k, srv in [t for t in targets if t not in good]:
            row = rowof(k)
            row.setdefault("error", "failed the sanity check (GET / must answer 200 with the 5-byte body)")
        # each chain really does its work, as curl sees it (else the row is not measured)
        for k, srv in list(good):
            row = rowof(k)
            try:
                problem = self.plugin_curl_check(k, srv, row)
            except Exception as e:
                problem = "curl check failed: %s" % e
            if problem:
                row["error"] = problem
                log("plugins: %s: %s" % (srv.name, problem))
                good.remove((k, srv))
        for k, srv in good:
            run_client(["wrk", "-t1", "-c50", "-d2s"] + header_args(srv.headers)
                       + ["http://127.0.0.1:%d/" % srv.port], 22)
        redis_up = any(k == "new_rl_redis" for k, _ in good)
        if redis_up:
            self.redis_cmd("CONFIG", "RESETSTAT")   # count the measured rounds only
        raw = {}
        for r in range(a.runs):
            for key, srv in good:
                log("plugins run %d/%d: %s" % (r + 1, a.runs, srv.name))
                rp = proc_tree(self.redis.pid) if key == "new_rl_redis" else []
                r0 = cpu_ticks(rp)
                x = wrk(srv.port, "/", 50, a.duration, srv.pids(), self.up.pids(), headers=srv.headers)
                if rp and x.get("requests"):
                    x["redis_cpu_us"] = (cpu_ticks(rp) - r0) * 1e6 / CLK_TCK / x["requests"]
                raw.setdefault(key, []).append(x)
        for row in res["rows"]:
            runs = raw.get(row["key"])
            if runs:
                row["wrk"] = summarize(runs)
                row["wrk"]["redis_cpu_us"] = median_of(runs, "redis_cpu_us")
                row["runs"] = runs
        if redis_up:
            rowof("new_rl_redis")["redis"] = self.redis_check(
                sum(x.get("requests", 0) for x in raw.get("new_rl_redis", [])))
        if "new_cache" in raw:
            # still hits after the measured runs (an expired entry is refetched once)
            st, hd = self.curl(PORT_PC)
            rowof("new_cache")["cache_after"] = "%s %s" % (st, hd.get("x-cache-status", "no X-Cache-Status"))
        # callgrind, one at a time, on the same config dirs (the wrk processes are stopped first)
        if self.have_callgrind():
            for key, srv in good:
                srv.stop()
            for key, srv in good:
                row = rowof(key)
                cg = self.callgrind_row(srv.name, "callgrind-plugins-%s" % key,
                                        self.sy_argv(srv.binary, srv.config_dir, srv.port, srv.admin_port),
                                        srv.port, (10,), headers=srv.headers)
                row["callgrind"] = cg
        st1 = steal_ticks()
        res["steal"], res["steal_proxy_cpu"] = st1[0] - st0[0], st1[1] - st0[1]
        res["minutes"] = (time.time() - t0) / 60
        res["busy_runs"] = QUIET["busy_runs"] - busy0

    def plugin_curl_check(self, key, srv, row):
        """The row's plugin does its work, as curl sees it. Returns None, or why not."""
        if key in ("new_keyauth", "new_keyauth_rl"):
            # key-auth authenticates: 200 with the key, 401 without it or with a wrong one
            hk, hv = srv.headers[0]
            seen, with_key = {}, {}
            for what, hdr in (("with the key", [(hk, hv)]), ("without a key", []),
                              ("with a wrong key", [(hk, "wrong-" + hv)])):
                seen[what], hd = self.curl(srv.port, hdr)
                if what == "with the key":
                    with_key = hd
            row["auth_check"] = seen
            log("plugins: %s: curl %s" % (srv.name, seen))
            if seen != {"with the key": "200", "without a key": "401", "with a wrong key": "401"}:
                return "key-auth does not authenticate (curl: %s)" % ", ".join(
                    "%s %s" % (s, w) for w, s in seen.items())
            if key == "new_keyauth_rl":
                row["rl_check"] = with_key.get("ratelimit-remaining")
                if "ratelimit-remaining" not in with_key:
                    return "rate-limiting does not count: no RateLimit-Remaining with the key"
        elif key == "new_rl_redis":
            # counted on Redis: 200 with RateLimit-Remaining, and the counters are in Redis
            st, hd = self.curl(srv.port)
            keys = self.redis_cmd("DBSIZE").strip()
            row["rl_check"] = {"status": st, "RateLimit-Remaining": hd.get("ratelimit-remaining"),
                               "redis keys": keys}
            log("plugins: %s: curl %s" % (srv.name, row["rl_check"]))
            if st != "200" or "ratelimit-remaining" not in hd:
                return "rate-limiting on Redis does not count (curl: %s, RateLimit-Remaining %s)" % (
                    st, hd.get("ratelimit-remaining", "absent"))
            if not keys.isdigit() or int(keys) == 0:
                return "rate-limiting answered but Redis holds no counter (DBSIZE %s)" % keys
        elif key == "new_cache":
            # after a warm-up request, the next one is a hit
            seen = [self.curl(srv.port) for _ in range(2)]
            row["cache_check"] = ["%s %s" % (st, hd.get("x-cache-status", "no X-Cache-Status"))
                                  for st, hd in seen]
            log("plugins: %s: curl %s" % (srv.name, row["cache_check"]))
            if seen[1][0] != "200" or seen[1][1].get("x-cache-status", "").lower() != "hit":
                return "proxy-cache does not hit: after a warm-up request curl saw %s" % row["cache_check"][1]
        return None

    def redis_check(self, requests):
        """After the measured rounds: how many connections the gateway holds to Redis and how
        many it opened, and the commands it sent per request (stats reset before the rounds)."""
        out = {"requests": requests}
        try:
            lst = self.redis_cmd("CLIENT", "LIST")          # connection 1 since the reset
            clients = [l for l in lst.splitlines() if l.startswith("id=")]
            mine = [l for l in clients if "cmd=client" in l]
            out["held"] = len(clients) - len(mine)
            out["client_list"] = [" ".join(f for f in l.split() if f.split("=")[0] in
                                           ("addr", "age", "idle", "cmd")) for l in clients if l not in mine]
            info = self.redis_info("all")            # connection 2 since the reset
            out["connected_clients"] = int(info.get("connected_clients", 0)) - 1
            out["opened"] = int(info.get("total_connections_received", 0)) - 2
            calls = {}
            for k, v in info.items():
                if k.startswith("cmdstat_"):
                    m = re.search(r"calls=(\d+)", v)
                    name = k[len("cmdstat_"):]
                    if m and name not in ("info", "client|list", "client", "config|resetstat", "config"):
                        calls[name] = int(m.group(1))
            out["calls"] = calls
            if requests:
                out["calls_per_request"] = {k: v / requests for k, v in calls.items()}
        except Exception as e:
            out["error"] = "%s: %s" % (type(e).__name__, e)
        log("plugins: redis after the runs: %s" % {k: v for k, v in out.items() if k != "client_list"})
        return out

    def sec_instructions(self):
        """User-space instructions and simulated data-cache misses per proxied request, counted
        by callgrind: nginx (main config, one process) and switchyard (main config) each run under
        valgrind on their usual port; h2load sends a warm-up, then counting is switched on for N
        requests at 10 connections, and again for N requests at 256 connections. The cache model
        takes this CPU's L1d and, as the last level, its per-core L2 (`cache_model`): the L3 is
        shared with whatever else runs on the host. Unlike CPU time, these counts do not move
        with the neighbours."""
        rows = self.results.setdefault("instructions", [])
        if not self.have_callgrind():
            return
        names = [p for p in ("nginx", "switchyard") if p in self.proxies]
        if "switchyard" in names and self.base_usable():
            names.append(BASELINE)
        for name in names:
            if name == "switchyard" and not self.sy_usable():
                continue
            self.nginx.stop()
            self.sy.stop()
            self.stop_extra()
            if name == "nginx":
                conf = os.path.join(BENCH, "nginxproxy-callgrind.conf")
                d = os.path.join(BENCH, "nginxproxy")
                os.makedirs(os.path.join(d, "logs"), exist_ok=True)
                # One process: the worker is the one valgrind watches.
                write_file(conf, nginx_main_conf().replace(
                    "worker_processes 1;", "worker_processes 1;\nmaster_process off;", 1))
                argv = ["nginx", "-e", os.path.join(d, "logs", "startup.log"), "-c", conf]
                port = PORT_NGINX
            else:
                srv = self.sy if name == "switchyard" else self.base
                cdir = os.path.join(BENCH, "%s-callgrind" % srv.tag)
                shutil.rmtree(cdir, ignore_errors=True)
                os.makedirs(cdir)
                for fn, text in main_config().items():
                    write_file(os.path.join(cdir, fn), text)
                argv = self.sy_argv(srv.binary, cdir, srv.port, srv.admin_port)
                port = srv.port
            rows.append(self.callgrind_row(name, "callgrind-%s" % name.replace(" ", "-"), argv, port,
                                           (10, 256)))

    def have_callgrind(self):
        if shutil.which("valgrind") and shutil.which("callgrind_control"):
            return True
        msg = "instructions: valgrind is not installed (bench/run.sh installs it)."
        if msg not in self.notes:
            self.notes.append(msg)
        return False

    @staticmethod
    def sy_argv(binary, cdir, port, admin_port):
        return [binary, "run", "--config-dir", cdir, "--no-watch",
                "--listen", "127.0.0.1:%d" % port,
                "--admin-listen", "127.0.0.1:%d" % admin_port, "--workers", "1"]

    def callgrind_row(self, name, tag, argv, port, conns_list, path="/", headers=()):
        """Runs `argv` (a proxy listening on `port`) under callgrind; for each connection count,
        a warm-up, then N requests counted. Returns {"proxy", "requests", "c10": {...}, ...} or
        with "error"; the dumps stay in the scratch directory as `tag`.out.*."""
        n = self.args.instr_requests
        out = os.path.join(BENCH, tag + ".out")
        vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, "--instr-atstart=no",
              "--cache-sim=yes"] + cache_model()
        log("instructions: %s under callgrind" % name)
        logpath = os.path.join(BENCH, tag + ".log")
        proc = spawn(vg + argv, logpath, cpu=PROXY_CPU)
        row = {"proxy": name, "requests": n, "dump": out}
        ready = lambda: http_get(port, path, 2, headers=headers)[0] == 200
        try:
            if not wait_until(lambda: proc.poll() is not None or ready(), 120, 0.5) \
                    or proc.poll() is not None:
                row["error"] = "did not start under valgrind: %s" % one_line(tail(logpath, 4))
                return row
            url = "http://127.0.0.1:%d%s" % (port, path)
            ctl = lambda *x: subprocess.run(["callgrind_control"] + list(x) + [str(proc.pid)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            timeout=60)
            for conns in conns_list:
                h2 = ["taskset", "-c", GEN_CPU, "h2load", "--h1", "-c", str(conns)] + header_args(headers)
                subprocess.run(h2 + ["-n", str(max(2000, 4 * conns)), url],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
                ctl("-z")
                ctl("-i", "on")
                r = subprocess.run(h2 + ["-n", str(n), url], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=900).stdout.decode(errors="replace")
                ctl("-i", "off")
                m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", r)
                if not m or int(m.group(2)) != n:
                    row["error"] = "h2load -c%d: %s" % (conns, one_line(r[-300:]))
                    break
                before = set(glob.glob(out + ".*"))
                ctl("-d")
                new_dump = lambda: sorted(set(glob.glob(out + ".*")) - before)
                # Read once the dump is whole: its totals line comes last.
                wait_until(lambda: new_dump() and callgrind_totals(new_dump()[-1]), 30, 0.2)
                counts = callgrind_totals(new_dump()[-1]) if new_dump() else None
                if not counts:
                    row["error"] = "no callgrind dump"
                    break
                per = lambda *ev: sum(counts.get(e, 0) for e in ev) / n
                row["c%d" % conns] = {"instr": per("Ir"), "l1d_miss": per("D1mr", "D1mw"),
                                      "ll_miss": per("DLmr", "DLmw"), "dump": new_dump()[-1]}
        finally:
            kill_proc(proc, group=True)
            log("instructions: %s: %s" % (name, row.get("error") or
                                           {c: row.get(c, {}).get("instr") for c in ("c10", "c256")}))
        return row

    def reload_run(self, port, srv, path, new_path, do_write):
        a = self.args
        r = {}
        try:
            st, _ = http_get(port, new_path, 2)
        except Exception as e:
            st = str(e)
        r["before_status"] = st
        dur = a.reload_duration
        write_at = min(3.0, dur / 3.0)
        state = {"started": False, "written": None, "seen": None, "polls": 0, "last_status": None}

        def written():
            state["written"] = time.time()

        def write():
            state["started"] = True
            do_write(written)
            poll_until_seen()

        def poll_once():
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
                c.request("GET", new_path)
                resp = c.getresponse()
                resp.read()
                c.close()
                return resp.status
            except Exception as e:
                return type(e).__name__

        def during():
            # called from run_client's loop every 0.05 s while wrk runs: at
            # write_at seconds into the load, write the config, then poll every
            # 5 ms until the new route answers 200 (bounded by reload_timeout;
            # wrk prints only when it ends, so its pipe cannot fill meanwhile).
            now = time.time()
            if state["t_start"] is None:
                state["t_start"] = now
            if not state["started"] and now - state["t_start"] >= write_at:
                write()

        def poll_until_seen():
            deadline = state["written"] + a.reload_timeout
            while state["seen"] is None and time.time() < deadline:
                s = poll_once()
                state["polls"] += 1
                state["last_status"] = s
                if s == 200:
                    state["seen"] = time.time()
                    return
                time.sleep(0.005)

        state["t_start"] = None
        x = wrk(port, path, 50, dur, srv.pids(), during=during, during_interval=0.05)
        if not state["started"]:   # wrk ended early: still measure the reload (no load)
            write()
        r["wrk"] = x
        r["polls"] = state["polls"]
        r["last_status"] = state["last_status"]
        r["reload_s"] = (state["seen"] - state["written"]) if state["seen"] else None
        r["write_at_s"] = write_at
        return r


# ---------------------------------------------------------------- rendering

def fmt_num(v, digits=1):
    if v is None:
        return "—"
    return "{:,.{d}f}".format(v, d=digits)


def fmt_rps(v):
    if v is None:
        return "—"
    if v >= 10000:
        return "%.1fk" % (v / 1000)
    if v >= 1000:
        return "%.2fk" % (v / 1000)
    return "%.0f" % v


def fmt_lat(us):
    if us is None:
        return "—"
    if us >= 1000:
        return "%.2f ms" % (us / 1000)
    return "%.0f µs" % us


def fmt_mib(kib):
    if kib is None:
        return "—"
    return "%.1f MiB" % (kib / 1024)


def fmt_kib(kib):
    if kib is None:
        return "—"
    return "%.1f KiB" % kib


def ratio(v, ref):
    if v is None or ref is None or ref == 0:
        return ""
    return " (%.2f×)" % (v / ref)


def cell(v, ref, f, is_ref):
    s = f(v)
    if not is_ref and v is not None:
        s += ratio(v, ref)
    return s


def errs_cell(s):
    parts = []
    if s.get("non2xx"):
        parts.append("%d non-2xx" % s["non2xx"])
    if s.get("socket_errors"):
        parts.append("%d socket err" % s["socket_errors"])
    if s.get("failed"):
        parts.append("%d failed" % s["failed"])
    if s.get("error"):
        parts.append("error: " + one_line(s["error"], 80))
    return ", ".join(parts) if parts else "0"


def render(h, meta):
    a = h.args
    R = h.results
    L = []
    L.append("# switchyard benchmark — %s" % meta["date"])
    L.append("")
    L.append("- Machine: %s CPUs (`nproc`), %s, %s RAM, kernel %s" % (
        meta["nproc"], meta["cpu"], meta["mem"], meta["kernel"]))
    L.append("- Tools: %s" % meta["versions"])
    L.append("- switchyard: %s" % meta["switchyard"])
    L.append("- Mode: %d run(s) × %d s per figure, medians%s; proxies interleaved; "
             "proxy + upstream pinned to CPU %s, load generator to CPU %s; one worker per proxy. "
             "Command: `%s`" % (a.runs, a.duration,
                                "; route-scaling runs %d s" % a.scaling_duration if "scaling" in R else "",
                                PROXY_CPU, GEN_CPU, meta["cmd"]))
    L.append("- (×) = ratio to nginx measured in this same run. Higher is better for RPS, req/s and MiB/s; "
             "lower is better for everything else.")
    L.append("")
    missing = h.missing_rows()

    def order(d):
        ks = [p for p in ALL_PROXIES if p in d] + [k for k in d if k not in ALL_PROXIES]
        return ks

    if "rps" in R:
        L.append("## Throughput — wrk -t1, 5-byte body at `/`, keep-alive")
        L.append("")
        L.append("| proxy | conns | RPS | proxy CPU µs/req | of it in the kernel | p50 | p99 | upstream CPU µs/req | errors |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        d = R["rps"]
        ref = d.get("nginx", {})
        for label in order(d):
            for t in ("c50", "c256"):
                if t not in d[label]:
                    continue
                s, rf = d[label][t], ref.get(t, {})
                isref = label == "nginx"
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    label, t[1:], cell(s["rps"], rf.get("rps"), fmt_rps, isref),
                    cell(s["cpu_us"], rf.get("cpu_us"), fmt_num, isref),
                    fmt_num(s.get("kernel_us")),
                    cell(s["p50_us"], rf.get("p50_us"), fmt_lat, isref),
                    cell(s["p99_us"], rf.get("p99_us"), fmt_lat, isref),
                    fmt_num(s.get("up_cpu_us")), errs_cell(s)))
        for label, why in missing:
            L.append("| %s | — | %s | | | | | | |" % (label, why))
        L.append("")

    if "latency" in R:
        L.append("## Latency at a fixed rate — h2load --h1, 49 connections, paced with --rps, "
                 "first second dropped")
        L.append("")
        L.append("| proxy | target req/s | achieved req/s | p50 | p99 | proxy CPU µs/req | errors |")
        L.append("|---|---|---|---|---|---|---|")
        d = R["latency"]
        ref = d.get("nginx", {})
        for label in order(d):
            for rate in a.rates:
                t = str(rate)
                if t not in d[label]:
                    continue
                s, rf = d[label][t], ref.get(t, {})
                isref = label == "nginx"
                L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                    label, fmt_rps(rate), fmt_rps(s.get("achieved")),
                    cell(s["p50_us"], rf.get("p50_us"), fmt_lat, isref),
                    cell(s["p99_us"], rf.get("p99_us"), fmt_lat, isref),
                    cell(s["cpu_us"], rf.get("cpu_us"), fmt_num, isref), errs_cell(s)))
        for label, why in missing:
            L.append("| %s | — | %s | | | | |" % (label, why))
        L.append("")

    if "bodies" in R:
        L.append("## Response bodies — wrk -t1 -c50")
        L.append("")
        L.append("| proxy | body | req/s | MiB/s (body) | proxy CPU µs/req | p99 | errors |")
        L.append("|---|---|---|---|---|---|---|")
        d = R["bodies"]
        ref = d.get("nginx", {})
        names = {"5": "5 B `/`", "1k": "1 KiB `/1k`", "1m": "1 MiB `/1m`"}
        for label in order(d):
            for b in ("5", "1k", "1m"):
                if b not in d[label]:
                    continue
                s, rf = d[label][b], ref.get(b, {})
                isref = label == "nginx"
                L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                    label, names[b], cell(s["rps"], rf.get("rps"), fmt_rps, isref),
                    cell(s.get("mibps"), rf.get("mibps"), lambda v: fmt_num(v, 2 if v and v < 10 else 0), isref),
                    cell(s["cpu_us"], rf.get("cpu_us"), fmt_num, isref),
                    cell(s["p99_us"], rf.get("p99_us"), fmt_lat, isref), errs_cell(s)))
        for label, why in missing:
            L.append("| %s | — | %s | | | | |" % (label, why))
        L.append("")

    if "memory" in R:
        L.append("## Memory — RSS and PSS summed over all the proxy's processes (nginx: master + worker)")
        L.append("")
        L.append("| proxy | idle RSS | idle PSS | under load RSS (c256 peak) | under load PSS | "
                 "RSS with %d idle conns | per idle conn (RSS) | per idle conn (PSS) |" % a.idle_conns)
        L.append("|---|---|---|---|---|---|---|---|")
        d = R["memory"]
        rf = d.get("nginx", {})
        for label in order(d):
            s = d[label]
            isref = label == "nginx"
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                label,
                cell(s.get("idle_rss"), rf.get("idle_rss"), fmt_mib, isref),
                cell(s.get("idle_pss"), rf.get("idle_pss"), fmt_mib, isref),
                cell(s.get("load_rss"), rf.get("load_rss"), fmt_mib, isref),
                cell(s.get("load_pss"), rf.get("load_pss"), fmt_mib, isref),
                cell(s.get("conns_rss"), rf.get("conns_rss"), fmt_mib, isref),
                cell(s.get("per_conn_rss"), rf.get("per_conn_rss"), fmt_kib, isref),
                cell(s.get("per_conn_pss"), rf.get("per_conn_pss"), fmt_kib, isref)))
        for label, why in missing:
            L.append("| %s | %s | | | | | | |" % (label, why))
        L.append("")

    if "scaling" in R:
        L.append("## Route scaling — wrk -t1 -c50, N distinct prefix routes `/r0000`…, "
                 "requesting the first and the last")
        L.append("")
        L.append("| proxy | routes | RPS first | RPS last | CPU µs/req first | CPU µs/req last | p99 last | "
                 "RSS / PSS after load | start → ready | errors |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        d = R["scaling"]
        for n in a.route_counts:
            rfd = d.get("nginx", {}).get(n, {})
            for label in order(d):
                s = d[label].get(n)
                if s is None:
                    continue
                if "error" in s and "first" not in s:
                    L.append("| %s | %s | %s | | | | | | | |" % (label, "{:,}".format(n), s["error"]))
                    continue
                isref = label == "nginx"
                f, l = s.get("first", {}), s.get("last", {})
                rf_f, rf_l = rfd.get("first", {}), rfd.get("last", {})
                mem = "%s / %s" % (fmt_mib(s.get("rss")), fmt_mib(s.get("pss")))
                if not isref and rfd.get("pss") and s.get("pss"):
                    mem += " (PSS %.2f×)" % (s["pss"] / rfd["pss"])
                e = errs_cell({k: f.get(k, 0) + l.get(k, 0) for k in ("non2xx", "socket_errors")})
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    label, "{:,}".format(n),
                    cell(f.get("rps"), rf_f.get("rps"), fmt_rps, isref),
                    cell(l.get("rps"), rf_l.get("rps"), fmt_rps, isref),
                    cell(f.get("cpu_us"), rf_f.get("cpu_us"), fmt_num, isref),
                    cell(l.get("cpu_us"), rf_l.get("cpu_us"), fmt_num, isref),
                    cell(l.get("p99_us"), rf_l.get("p99_us"), fmt_lat, isref),
                    mem,
                    "%.2f s" % s["ready_s"] if s.get("ready_s") is not None else "—", e))
        for label, why in h.missing_rows(baseline=False):
            L.append("| %s | — | %s | | | | | | | |" % (label, why))
        L.append("")

    if "reload" in R:
        L.append("## Reload under load — wrk -t1 -c50 on the last of %s routes; a config that adds one route "
                 "is written; time from the file in place until the new route answers 200 (polled every 5 ms)"
                 % "{:,}".format(a.reload_routes))
        L.append("")
        L.append("| proxy | how | write → new route 200 | wrk RPS during run | non-2xx | socket errors |")
        L.append("|---|---|---|---|---|---|")
        rows = R["reload"]
        rf = next((x for x in rows if x.get("proxy") == "nginx" and "error" not in x), {})
        for s in sorted(rows, key=lambda x: ALL_PROXIES.index(x["proxy"]) if x["proxy"] in ALL_PROXIES else 9):
            label = s["proxy"]
            if "error" in s:
                L.append("| %s | %s | %s | | | |" % (label, s.get("how", ""), s["error"]))
                continue
            isref = label == "nginx"
            w = s.get("wrk", {})
            rl = s.get("reload_s")
            if s.get("before_status") == 200:
                rcell = "invalid: the new route answered 200 before the write"
            elif rl is not None:
                rcell = "%.3f s" % rl + (ratio(rl, rf.get("reload_s")) if not isref else "")
            else:
                rcell = "**not within %d s** (last answer: %s)" % (a.reload_timeout, s.get("last_status"))
            L.append("| %s | %s | %s | %s | %s | %s |" % (
                label, s.get("how", ""), rcell,
                cell(w.get("rps"), rf.get("wrk", {}).get("rps"), fmt_rps, isref),
                w.get("non2xx", "—"), w.get("socket_errors", "—")))
        for label, why in h.missing_rows(baseline=False):
            L.append("| %s | | %s | | | |" % (label, why))
        L.append("")

    if "instructions" in R:
        L.append("## User-space instructions per proxied request — callgrind, h2load --h1 -c10 "
                 "and -c256, %s requests each after a warm-up" % "{:,}".format(a.instr_requests))
        L.append("")
        L.append("Simulated data-cache misses: L1d and the per-core L2 of this CPU as the last "
                 "level (valgrind's cache model; the kernel's accesses are not in it).")
        L.append("")
        L.append("| proxy | conns | instructions / request | L1d misses / request "
                 "| L2 misses / request |")
        L.append("|---|---|---|---|---|")
        rows = R["instructions"]
        rf = next((x for x in rows if x.get("proxy") == "nginx" and "error" not in x), {})
        for s in rows:
            if "error" in s:
                L.append("| %s | | %s | | |" % (s["proxy"], s["error"]))
                continue
            isref = s["proxy"] == "nginx"
            for c in ("c10", "c256"):
                v, ref = s.get(c), rf.get(c, {})
                if not v:
                    continue
                cells = ["%s%s" % (("{:,.0f}" if k == "instr" else "{:,.1f}").format(v[k]),
                                   "" if isref else ratio(v[k], ref.get(k)))
                         for k in ("instr", "l1d_miss", "ll_miss")]
                L.append("| %s | %s | %s |" % (s["proxy"], c[1:], " | ".join(cells)))
        L.append("")

    if "plugins" in R:
        L.extend(render_plugins(h))

    if h.base is not None:
        L.extend(render_baseline(h))

    notes = list(meta["notes"]) + h.notes
    L.append("## Notes")
    L.append("")
    for n in notes:
        L.append("- " + n)
    L.append("")
    return "\n".join(L)


def spread(vals):
    """Run-to-run spread: (max − min) ÷ median."""
    vals = [v for v in vals if v is not None]
    if len(vals) < 2:
        return None
    return (max(vals) - min(vals)) / statistics.median(vals)


def plugin_verdicts(rows):
    """The plugins section's targets: [(target, figure, met or None)]."""
    by = {r["key"]: r for r in rows}
    old, new, npl = by.get("old", {}), by.get("new", {}), by.get("new_plugins", {})
    nka = by.get("new_keyauth", {})

    def instr(r):
        return r.get("callgrind", {}).get("c10", {}).get("instr")
    out = []
    io, i_n, ip = instr(old), instr(new), instr(npl)
    if io and i_n:
        q = i_n / io
        out.append(("plugin-free route: instructions per request within 3 % of old main",
                    "%s vs %s: %.3f× (%+.1f %%)" % ("{:,.0f}".format(i_n), "{:,.0f}".format(io), q,
                                                    (q - 1) * 100), q <= 1.03))
    ro, rn = [x.get("rps") for x in old.get("runs", [])], [x.get("rps") for x in new.get("runs", [])]
    mo, mn = old.get("wrk", {}).get("rps"), new.get("wrk", {}).get("rps")
    if mo and mn:
        q = mn / mo
        noise = max(x for x in (spread(ro), spread(rn)) if x is not None) \
            if spread(ro) is not None or spread(rn) is not None else None
        pairs = [b / a for a, b in zip(ro, rn) if a and b]
        fig = "median %s vs %s req/s: %.3f× (%+.1f %%)" % (fmt_rps(mn), fmt_rps(mo), q, (q - 1) * 100)
        if noise is not None:
            fig += "; run-to-run spread (max − min) ÷ median: %.1f %% (the larger of the two builds')" % (
                noise * 100)
        if pairs:
            fig += "; per-round ratio new ÷ old %.3f–%.3f" % (min(pairs), max(pairs))
        out.append(("plugin-free route: throughput within run-to-run noise of old main", fig,
                    None if noise is None else abs(q - 1) <= noise))
        co, cn = old.get("wrk", {}).get("cpu_us"), new.get("wrk", {}).get("cpu_us")
        if co and cn:
            out.append(("(plugin-free route: CPU per request, for information)",
                        "%.2f vs %.2f µs: %.3f×; spread %s / %s" % (
                            cn, co, cn / co,
                            *("%.1f %%" % (x * 100) if x is not None else "—" for x in (
                                spread([r.get("cpu_us") for r in new.get("runs", [])]),
                                spread([r.get("cpu_us") for r in old.get("runs", [])])))), None))
    if i_n and ip:
        q = ip / i_n
        out.append(("%d no-op plugins: instructions per request within 5 %% of the plugin-free route"
                    % len(NOOP_PLUGINS),
                    "%s vs %s: %.3f× (%+.1f %%, %+.0f per request)" % (
                        "{:,.0f}".format(ip), "{:,.0f}".format(i_n), q, (q - 1) * 100, ip - i_n),
                    q <= 1.05))
    # issue 19: key-auth costs at most 5 % more CPU per request than the same route without it
    cn, ck = new.get("wrk", {}).get("cpu_us"), nka.get("wrk", {}).get("cpu_us")
    if cn and ck:
        q = ck / cn
        rn = [r.get("cpu_us") for r in new.get("runs", [])]
        rk = [r.get("cpu_us") for r in nka.get("runs", [])]
        pairs = [b / a for a, b in zip(rn, rk) if a and b]
        fig = "median %.2f vs %.2f µs: %.3f× (%+.1f %%)" % (ck, cn, q, (q - 1) * 100)
        if pairs:
            fig += "; per-round ratio %.3f–%.3f (median %.3f)" % (
                min(pairs), max(pairs), statistics.median(pairs))
        sp = [x for x in (spread(rn), spread(rk)) if x is not None]
        if sp:
            fig += "; run-to-run spread %.1f %%" % (max(sp) * 100)
        out.append(("key-auth: CPU per request within 5 % of the plugin-free route (issue 19)", fig,
                    q <= 1.05))
    ik = instr(nka)
    if i_n and ik:
        q = ik / i_n
        out.append(("key-auth: instructions per request within 5 % of the plugin-free route "
                    "(the same target, counted where the neighbours cannot move it)",
                    "%s vs %s: %.3f× (%+.1f %%, %+.0f per request)" % (
                        "{:,.0f}".format(ik), "{:,.0f}".format(i_n), q, (q - 1) * 100, ik - i_n),
                    q <= 1.05))

    def cpu_ratio(row):
        """(median ratio, figure text) of a row's CPU per request to the plugin-free route's."""
        c = row.get("wrk", {}).get("cpu_us")
        if not (cn and c):
            return None, None
        q = c / cn
        rn = [r.get("cpu_us") for r in new.get("runs", [])]
        rr = [r.get("cpu_us") for r in row.get("runs", [])]
        pairs = [b / a for a, b in zip(rn, rr) if a and b]
        fig = "median %.2f vs %.2f µs: %.3f× (%+.1f %%)" % (c, cn, q, (q - 1) * 100)
        if pairs:
            fig += "; per-round ratio %.3f–%.3f (median %.3f)" % (
                min(pairs), max(pairs), statistics.median(pairs))
        sp = [x for x in (spread(rn), spread(rr)) if x is not None]
        if sp:
            fig += "; run-to-run spread %.1f %%" % (max(sp) * 100)
        return q, fig

    def instr_ratio(row):
        i = instr(row)
        if not (i_n and i):
            return None, None
        q = i / i_n
        return q, "%s vs %s: %.3f× (%+.1f %%, %+.0f per request)" % (
            "{:,.0f}".format(i), "{:,.0f}".format(i_n), q, (q - 1) * 100, i - i_n)

    def rps_ratio(row):
        rr, rn_ = row.get("wrk", {}).get("rps"), new.get("wrk", {}).get("rps")
        if not (rr and rn_):
            return ""
        return "%s vs %s req/s: %.3f× (%+.1f %%)" % (fmt_rps(rr), fmt_rps(rn_), rr / rn_, (rr / rn_ - 1) * 100)
    # key-auth + rate-limiting (local): at most 10 % more CPU per request than the plugin-free
    # route (Kong loses 24 % of its throughput to the same pair)
    kr = by.get("new_keyauth_rl", {})
    q, fig = cpu_ratio(kr)
    if q is not None:
        out.append(("key-auth + rate-limiting (local): CPU per request at most 10 % over the plugin-free "
                    "route (Kong loses 24 % of its throughput to the pair)", fig, q <= 1.10))
    q, fig = instr_ratio(kr)
    if q is not None:
        out.append(("key-auth + rate-limiting (local): instructions per request at most 10 % over the "
                    "plugin-free route", fig, q <= 1.10))
    if rps_ratio(kr):
        out.append(("(key-auth + rate-limiting (local): throughput, for information)", rps_ratio(kr), None))
    # rate-limiting on Redis: one round trip per request over one multiplexed connection
    rr = by.get("new_rl_redis", {})
    w = rr.get("wrk", {})
    if w.get("rps"):
        fig = "%s req/s, p99 %s (plugin-free route: %s req/s, p99 %s)" % (
            fmt_rps(w["rps"]), fmt_lat(w.get("p99_us")), fmt_rps(new.get("wrk", {}).get("rps")),
            fmt_lat(new.get("wrk", {}).get("p99_us")))
        q, cf = cpu_ratio(rr)
        if q is not None:
            fig += "; gateway CPU per request %s" % cf
        if w.get("redis_cpu_us") is not None:
            fig += "; redis-server CPU %.2f µs per request (same CPU as the gateway)" % w["redis_cpu_us"]
        q, inf = instr_ratio(rr)
        if q is not None:
            fig += "; instructions per request %s" % inf
        out.append(("(rate-limiting on Redis: one round trip per request over one multiplexed "
                    "connection; for information)", fig, None))
    rd = rr.get("redis", {})
    if "held" in rd:
        per = rd.get("calls_per_request", {})
        fig = "%d connection(s) held after the runs (CLIENT LIST, the query's own left out), %d opened " \
              "during %s measured requests" % (rd["held"], rd.get("opened", -1), "{:,}".format(rd["requests"]))
        if per:
            fig += "; commands per request: %s" % ", ".join(
                "%s %.3f" % (k, v) for k, v in sorted(per.items(), key=lambda kv: (-kv[1], kv[0])))
        out.append(("rate-limiting on Redis: the gateway holds at most a few Redis connections (≤ 4), "
                    "not one per request", fig, rd["held"] <= 4 and 0 <= rd.get("opened", 0) <= 4))
    elif rd.get("error"):
        out.append(("rate-limiting on Redis: connections held", "could not ask Redis: " + rd["error"], False))
    # proxy-cache: a hit is cheaper than a proxied request
    pc = by.get("new_cache", {})
    q, fig = cpu_ratio(pc)
    if q is not None:
        up, upn = pc.get("wrk", {}).get("up_cpu_us"), new.get("wrk", {}).get("up_cpu_us")
        if up is not None and upn is not None:
            fig += "; upstream CPU per request %.2f µs vs %.2f µs" % (up, upn)
        out.append(("proxy-cache hit: CPU per request below the plugin-free (proxied) route's (ratio < 1)",
                    fig, q < 1))
    q, fig = instr_ratio(pc)
    if q is not None:
        out.append(("proxy-cache hit: instructions per request below the plugin-free route's (ratio < 1)",
                    fig, q < 1))
    if rps_ratio(pc):
        out.append(("(proxy-cache hit: throughput, for information)", rps_ratio(pc), None))
    return out


def render_plugins(h):
    a = h.args
    P = h.results["plugins"]
    L = ["## Plugin chains — the bench_gateway build on the main config's catch-all route, plain, "
         "with %d no-op plugins (access + response_head), with key-auth, with key-auth + rate-limiting "
         "(local), with rate-limiting on Redis and with proxy-cache (hits); the baseline build (%s) "
         "on the plain route" % (len(NOOP_PLUGINS), a.baseline_label), ""]
    if P.get("error"):
        L += ["Not measured: %s" % P["error"], ""]
        return L

    def row_label(r):
        return "%s, plugin-free route" % a.baseline_label if r["key"] == "old" else r["label"]
    L.append("wrk -t1 -c50 -d%ds --latency on `/`, %d runs interleaved (%s), medians; instructions and L1d "
             "misses from callgrind at h2load --h1 -c10, %s requests after a warm-up. The no-op route "
             "carries `%s`; the key-auth route carries `key-auth` (`%s`), one consumer has the key `%s`, "
             "and every request to it sends `%s: %s` (wrk and h2load `-H`). The key-auth + rate-limiting "
             "route adds `rate-limiting` (`%s`: never refuses) to the same key-auth; the Redis route "
             "carries only `rate-limiting` (`%s`) against the harness's own `redis-server --port %d "
             "--save '' --appendonly no`, pinned to CPU %s with the upstream and the gateways; the cache "
             "route carries `proxy-cache` (`%s`; the upstream's `/` answers `Content-Type: %s`), and every "
             "measured request is a hit (the warm-up fills the entry)."
             % (a.duration, a.runs, " → ".join(row_label(r) for r in P["rows"] if "wrk" in r),
                "{:,}".format(a.instr_requests), "`, `".join(NOOP_PLUGINS), KEYAUTH_PLUGIN[1],
                KEYAUTH_HEADER[1], KEYAUTH_HEADER[0], KEYAUTH_HEADER[1], RL_LOCAL_PLUGIN[1],
                RL_REDIS_PLUGIN[1], PORT_REDIS, PROXY_CPU, P.get("cache_config", "strategy: memory"),
                P.get("upstream_content_type") or "?"))
    checks = []
    for r in P["rows"]:
        if r.get("auth_check"):
            c = "%s: %s" % (r["label"], ", ".join("%s %s" % (w, st) for w, st in r["auth_check"].items()))
            if r.get("rl_check") and r["key"] == "new_keyauth_rl":
                c += ", RateLimit-Remaining %s with the key" % r["rl_check"]
            checks.append(c)
        if r["key"] == "new_rl_redis" and r.get("rl_check"):
            rc = r["rl_check"]
            checks.append("%s: %s, RateLimit-Remaining %s, %s counter key(s) in Redis" % (
                r["label"], rc.get("status"), rc.get("RateLimit-Remaining"), rc.get("redis keys")))
        if r.get("cache_check"):
            c = "%s: two requests after the start-up probe answered %s, then %s (`X-Cache-Status`)" % (
                r["label"], r["cache_check"][0], r["cache_check"][1])
            if r.get("cache_after"):
                c += "; after the measured runs: %s" % r["cache_after"]
            checks.append(c)
    if checks:
        L.append("")
        L.append("Checked with curl before measuring (a row that fails is not measured): %s." % "; ".join(checks))
    L.append("")
    L.append("| build, route | requests/s | CPU µs/req (of it kernel) | p99 (wrk) | instructions / request (c10) "
             "| L1d misses / request | req/s per run (min–max) | steal ticks, proxies' CPU | errors |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    by = {r["key"]: r for r in P["rows"]}

    def val(r, k):
        if k in ("instr", "l1d_miss"):
            return r.get("callgrind", {}).get("c10", {}).get(k)
        return r.get("wrk", {}).get(k)

    def rcell(r, k, f):
        v = val(r, k)
        s = f(v)
        refs = [("new", "plugin-free"), ("old", "old")]
        rs = []
        for rk, name in (refs[1:] if r["key"] == "new" else [] if r["key"] == "old" else refs):
            ref = val(by.get(rk, {}), k)
            if v is not None and ref:
                rs.append("%.3f× %s" % (v / ref, name))
        return s + (" (%s)" % ", ".join(rs) if rs else "")
    for r in P["rows"]:
        label = row_label(r)
        if "error" in r and "wrk" not in r:
            L.append("| %s | %s | | | | | | | |" % (label, r["error"]))
            continue
        w = r.get("wrk", {})
        runs = [x.get("rps") for x in r.get("runs", []) if x.get("rps")]
        cg = r.get("callgrind", {})
        errs = errs_cell(w) if w else "—"
        if cg.get("error"):
            errs += "; callgrind: " + one_line(cg["error"], 100)
        if r.get("error"):
            errs += "; " + r["error"]
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, rcell(r, "rps", fmt_rps),
            rcell(r, "cpu_us", lambda v: fmt_num(v, 2)) + (" (%s)" % fmt_num(w.get("kernel_us"), 2)
                                                          if w.get("kernel_us") is not None else ""),
            rcell(r, "p99_us", fmt_lat),
            rcell(r, "instr", lambda v: fmt_num(v, 0)),
            rcell(r, "l1d_miss", fmt_num),
            "%s–%s" % (fmt_rps(min(runs)), fmt_rps(max(runs))) if runs else "—",
            sum(x.get("steal_proxy_cpu", 0) for x in r.get("runs", [])),
            errs))
    L.append("")
    L.append("Targets:")
    L.append("")
    for what, fig, met in plugin_verdicts(P["rows"]):
        L.append("- %s — %s: %s" % (what, fig, "—" if met is None else ("**met**" if met else "**missed**")))
    L.append("")
    rd = by.get("new_rl_redis", {}).get("redis", {})
    if "held" in rd:
        per = rd.get("calls_per_request", {})
        L.append("Redis: the gateway counts a request with one script call (Kong's per-period "
                 "`incr`/`expire`, every configured period at once), so one round trip per request, over "
                 "one multiplexed connection that all requests share (`INFO commandstats` over the measured "
                 "runs, per request: %s; `incr`/`expire` run inside the script). After the measured runs "
                 "`redis-cli CLIENT LIST` shows %d connection(s) besides its own (%s), `INFO` "
                 "connected_clients %d besides redis-cli's, and %d connection(s) were opened during the runs "
                 "(stats reset before them). redis-server's own CPU is not in the gateway's CPU per request." % (
                     ", ".join("`%s` %.3f" % kv for kv in sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))) or "—",
                     rd["held"], "; ".join("`%s`" % c for c in rd.get("client_list", [])) or "none",
                     rd.get("connected_clients", -1), rd.get("opened", -1)))
        L.append("")
    dist = ("%d of its measured runs started on a machine more than 10 %% busy with other work" % P["busy_runs"]
            if P.get("busy_runs") else "every measured run started on an otherwise idle machine")
    L.append("This section took %.1f min; steal: %d ticks on all CPUs, %d on the proxies' CPU; %s. "
             "Instruction counts are not moved by either." % (
                 P.get("minutes", 0), P.get("steal", 0), P.get("steal_proxy_cpu", 0), dist))
    for n in P.get("notes", []):
        L.append("")
        L.append("Note: " + n)
    L.append("")
    return L


def render_baseline(h):
    """switchyard against --baseline-switchyard, figure by figure, from the same run."""
    R, a = h.results, h.args
    rows = []

    def add(fig, new, old, f, lower_better=True):
        if new is None or old is None or not old:
            return
        rows.append("| %s | %s | %s | %.3f× |" % (fig, f(new), f(old), new / old))
    for t in ("c50", "c256"):
        n, o = R.get("rps", {}).get("switchyard", {}).get(t, {}), R.get("rps", {}).get(BASELINE, {}).get(t, {})
        add("requests/s, %s" % t, n.get("rps"), o.get("rps"), fmt_rps)
        add("CPU µs/req, %s" % t, n.get("cpu_us"), o.get("cpu_us"), lambda v: fmt_num(v, 2))
    for rate in a.rates:
        n = R.get("latency", {}).get("switchyard", {}).get(str(rate), {})
        o = R.get("latency", {}).get(BASELINE, {}).get(str(rate), {})
        add("p99 at %s req/s" % fmt_rps(rate), n.get("p99_us"), o.get("p99_us"), fmt_lat)
    for b in ("1k", "1m"):
        n, o = R.get("bodies", {}).get("switchyard", {}).get(b, {}), R.get("bodies", {}).get(BASELINE, {}).get(b, {})
        add("%s bodies, requests/s" % b, n.get("rps"), o.get("rps"), fmt_rps)
    n, o = R.get("memory", {}).get("switchyard", {}), R.get("memory", {}).get(BASELINE, {})
    add("idle RSS", n.get("idle_rss"), o.get("idle_rss"), fmt_mib)
    add("per idle connection (RSS)", n.get("per_conn_rss"), o.get("per_conn_rss"), fmt_kib)
    ins = {x["proxy"]: x for x in R.get("instructions", []) if "error" not in x}
    for c in ("c10", "c256"):
        n, o = ins.get("switchyard", {}).get(c, {}), ins.get(BASELINE, {}).get(c, {})
        add("instructions/req, %s" % c, n.get("instr"), o.get("instr"), lambda v: fmt_num(v, 0))
        add("L1d misses/req, %s" % c, n.get("l1d_miss"), o.get("l1d_miss"), fmt_num)
    if not rows:
        return []
    return ["## switchyard against the baseline build (%s), same run, interleaved" % a.baseline_label, "",
            "| figure | switchyard | baseline | switchyard ÷ baseline |", "|---|---|---|---|"] + rows + [""]


def machine_meta(h, steal=None):
    """steal: (ticks on all CPUs, ticks on the proxies' CPU, minutes) over the benchmark."""
    def cmd(argv):
        try:
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
            return p.stdout.decode("utf-8", "replace").strip()
        except Exception:
            return ""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1024 / 1024)
    versions = "; ".join(x for x in [
        cmd(["nginx", "-v"]).replace("nginx version: ", ""),
        " ".join(cmd(["haproxy", "-v"]).splitlines()[0].split()[:3]) if shutil.which("haproxy") else "",
        " ".join(cmd(["wrk", "-v"]).splitlines()[0].split()[:2]) if shutil.which("wrk") else "",
        cmd(["h2load", "--version"]),
        "Python " + sys.version.split()[0],
    ] if x)
    rev = cmd(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    if not re.fullmatch(r"[0-9a-f]{4,40}", rev or ""):
        rev = "no commit"
    dirty = cmd(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"])

    def describe(role, with_repo=True):
        b = h.binaries[role]
        mt = datetime.datetime.fromtimestamp(b["mtime"]).strftime("%Y-%m-%d %H:%M")
        src = os.path.relpath(b["src"], REPO) if os.path.abspath(b["src"]).startswith(REPO + "/") else b["src"]
        return "`%s` (built %s, sha256 %s…%s)" % (
            src, mt, b["sha"], "; repo HEAD %s%s" % (rev, ", uncommitted changes in the work tree"
                                                     if dirty else "") if with_repo else "")
    sy = "not measured"
    if "switchyard" in h.proxies:
        sy = h.sy_status or describe("switchyard")
        if h.base is not None:
            sy += "; baseline (%s): %s" % (h.args.baseline_label, h.base_status or describe("baseline", False))
    if "plugins" in h.args.sections:
        sy += "; plugins section: bench_gateway %s" % (h.gw_status or describe("bench_gateway"))
    notes = []
    if h.sy_main_note == "kong+ocelot":
        notes.append("switchyard's main figures (throughput, latency, bodies, memory) use a realistic table of "
                     "100 Kong routes (prefix routes /k0…/k98 and the catch-all `/`, which the benchmark "
                     "requests match and which has the lowest priority) + 100 Ocelot routes (/o0/{everything}…). "
                     "nginx and HAProxy use their single-route configs from shared/bench/README.md.")
    elif h.sy_main_note == "kong-only":
        notes.append("switchyard's main figures (throughput, latency, bodies, memory) use 200 Kong routes "
                     "(prefix routes /k0…/k198 and the catch-all `/`, which the benchmark requests match and which "
                     "has the lowest priority). nginx and HAProxy use their single-route configs from "
                     "shared/bench/README.md.")
    R = h.results
    if any(k in R for k in ("rps", "latency", "bodies", "scaling")):
        notes.append("CPU µs/req = Δ(utime+stime) of all the proxy's processes (threads included) from "
                     "/proc/PID/stat, in ticks of 1/%d s, ÷ requests completed in that run. 'upstream CPU "
                     "µs/req' is the same for the upstream nginx: higher than in nginx's row means the proxy "
                     "makes the upstream work harder (e.g. fewer reused connections). RPS also carries the "
                     "upstream's cost (it shares CPU 1), so RPS ratios understate CPU differences." % CLK_TCK)
    if "latency" in R:
        notes.append("Fixed-rate latency: wrk2 is not packaged in Debian; h2load paces each of its 49 "
                     "connections with --rps and starts them 1 ms apart so that sends spread evenly. Latency is "
                     "measured from when a request is actually sent (no coordinated-omission correction): if a "
                     "proxy cannot keep up, 'achieved' falls below the target.")
    if any("upstream alone (no proxy)" in R.get(k, {}) for k in ("rps", "latency")):
        notes.append("The 'upstream alone' rows (one run each) load the upstream nginx directly (their CPU "
                     "µs/req is the upstream's): the floor set by the upstream and by this VM, whose scheduler adds "
                     "millisecond stalls to tail latency at times.")
    if "memory" in R:
        notes.append("Memory: idle = after a 1 s warm-up and 1 s of rest; under load = peak during wrk -c256; "
                     "RSS summed over nginx's master+worker double-counts the pages they share, PSS (from "
                     "/proc/PID/smaps_rollup) does not. Per idle connection = (memory with the idle "
                     "connections − idle memory) ÷ connections; kernel socket buffers are not included.")
    if "reload" in R:
        notes.append("Reload: the poller opens a new connection every 5 ms on the load generator's CPU, so wrk's "
                     "RPS in that table is lower while the poll lasts; wrk's socket errors for nginx are the old "
                     "worker closing its keep-alive connections on graceful shutdown.")
    if steal:
        notes.append("Steal (CPU time the hypervisor gave to other guests, from /proc/stat) over the whole "
                     "benchmark: %d ticks on all CPUs, %d on the proxies' CPU %s, in %.1f min (1 tick = 1/%d s)."
                     % (steal[0], steal[1], PROXY_CPU, steal[2], CLK_TCK))
    if QUIET["busy_runs"]:
        notes.append("**Disturbed:** %d of %d measured runs started while other processes kept the machine "
                     ">10%% busy (up to %.0f%%), even after waiting; those figures may be off. Re-run on a quiet "
                     "machine." % (QUIET["busy_runs"], QUIET["runs"], QUIET["max_busy"]))
    elif QUIET["runs"]:
        notes.append("Every measured run started on an otherwise idle machine (≤10%% CPU busy; waited %.0f s "
                     "for quiet in total)." % QUIET["waited"])
    return {"notes": notes, "versions": versions, "switchyard": sy, "cpu": cpu, "mem": mem,
            "nproc": NPROC, "kernel": os.uname().release}


# ---------------------------------------------------------------- main

def check_ports():
    busy = []
    for port in ALL_PORTS:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            busy.append(port)
        finally:
            s.close()
    if busy:
        who = ""
        if shutil.which("ss"):
            try:
                who = subprocess.run(["ss", "-ltnp"], stdout=subprocess.PIPE, timeout=5).stdout.decode()
                who = "\n".join(l for l in who.splitlines() if any(":%d " % p in l for p in busy))
            except Exception:
                pass
        sys.stderr.write("error: port(s) %s already in use; free them first.\n%s\n" %
                         (", ".join(map(str, busy)), who))
        raise SystemExit(2)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 run × 3 s per figure (scaling 2 s)")
    ap.add_argument("--runs", type=int, help="runs per figure (default 3; median reported)")
    ap.add_argument("--duration", type=int, help="seconds per run (default 10)")
    ap.add_argument("--scaling-duration", type=int, help="seconds per route-scaling run (default 3)")
    ap.add_argument("--sections", default=",".join(ALL_SECTIONS),
                    help="comma-separated subset of %s (default: all)" % ",".join(ALL_SECTIONS))
    ap.add_argument("--proxies", default=",".join(ALL_PROXIES),
                    help="comma-separated subset of %s (default: all)" % ",".join(ALL_PROXIES))
    ap.add_argument("--switchyard", default=os.path.join(TARGET, "release", "switchyard"),
                    help="switchyard binary (default: $CARGO_TARGET_DIR or target, /release/switchyard)")
    ap.add_argument("--baseline-switchyard", metavar="PATH",
                    help="a second switchyard build (e.g. old main) run beside --switchyard in the same "
                         "configuration and interleaved with it (rps, latency, bodies, memory, plugins, "
                         "instructions)")
    ap.add_argument("--baseline-label", default="baseline",
                    help="what the baseline build is, for the report (e.g. 'old main 2d5d92a')")
    ap.add_argument("--plugin-switchyard", metavar="PATH",
                    default=os.path.join(TARGET, "release", "examples", "bench_gateway"),
                    help="the plugins section's gateway, examples/bench_gateway.rs (default: "
                         "target/release/examples/bench_gateway, built when missing)")
    ap.add_argument("--no-build", action="store_true",
                    help="do not run cargo build --release when the switchyard binary is missing")
    ap.add_argument("--route-counts", default="10,1000,10000", help="route counts for the scaling section")
    ap.add_argument("--reload-routes", type=int, default=10000, help="routes in the reload section's config")
    ap.add_argument("--reload-inplace", action="store_true",
                    help="rewrite kong.yaml in place instead of replacing it with a rename")
    ap.add_argument("--reload-timeout", type=int, help="seconds to wait for the new route (default 15)")
    ap.add_argument("--rates", default="5000,20000", help="fixed rates for the latency section (req/s)")
    ap.add_argument("--instr-requests", type=int,
                    help="requests counted by the instructions section (default 10000; quick 3000)")
    ap.add_argument("--idle-conns", type=int, default=1000, help="idle keep-alive connections (memory)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the 'upstream alone' throughput row")
    ap.add_argument("--no-nginx-scaling", action="store_true",
                    help="scaling/reload sections: do not run nginx with N locations")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.md"),
                    help="markdown output (a .json with raw results is written beside it)")
    ap.add_argument("--scratch", help=argparse.SUPPRESS)
    ap.add_argument("--no-install", action="store_true", help="(run.sh) do not apt-get install missing tools")
    ap.add_argument("--keep", action="store_true", help="(run.sh) keep the scratch directory")
    a = ap.parse_args(argv)
    a.runs = a.runs or (1 if a.quick else 3)
    a.duration = a.duration or (3 if a.quick else 10)
    a.scaling_duration = a.scaling_duration or (2 if a.quick else min(3, a.duration))
    a.mem_load_s = min(5, a.duration)
    a.reload_duration = max(6, a.duration)
    a.reload_timeout = a.reload_timeout or 15
    a.instr_requests = a.instr_requests or (3000 if a.quick else 10000)
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = [s for s in a.sections if s not in ALL_SECTIONS]
    if bad:
        ap.error("unknown section(s): %s" % ", ".join(bad))
    a.proxies = [s.strip() for s in a.proxies.split(",") if s.strip()]
    bad = [s for s in a.proxies if s not in ALL_PROXIES]
    if bad:
        ap.error("unknown proxy(ies): %s" % ", ".join(bad))
    if "nginx" not in a.proxies:
        sys.stderr.write("note: ratios are to nginx; without nginx no ratios are printed\n")
    a.route_counts = [int(x) for x in a.route_counts.split(",") if x.strip()]
    if max(a.route_counts + [a.reload_routes]) > 10000:
        ap.error("route counts above 10000 are not supported (paths are /r0000../r9999)")
    a.rates = [int(x) for x in a.rates.split(",") if x.strip()]
    return a


def main(argv):
    global ARGS, BENCH
    a = parse_args(argv)
    ARGS = a
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if a.scratch:
        BENCH = a.scratch
        os.makedirs(BENCH, exist_ok=True)
    else:
        import tempfile
        BENCH = tempfile.mkdtemp(prefix="switchyard-bench.")
    os.chmod(BENCH, 0o755)   # nginx workers run as nobody and must read www/
    for tool in ("nginx", "haproxy", "wrk", "h2load", "taskset", "curl"):
        if not shutil.which(tool):
            raise SystemExit("error: %s not found (run bench/run.sh without --no-install)" % tool)
    global PROXY_CPU, GEN_CPU, NPROC
    try:   # `nproc` before this process pins itself (nproc honours the affinity mask)
        NPROC = subprocess.run(["nproc"], stdout=subprocess.PIPE, timeout=10).stdout.decode().strip()
    except Exception:
        NPROC = str(os.cpu_count())
    cpus = sorted(os.sched_getaffinity(0))
    if {0, 1} <= set(cpus):
        GEN_CPU, PROXY_CPU = "0", "1"
    elif len(cpus) >= 2:
        GEN_CPU, PROXY_CPU = str(cpus[0]), str(cpus[1])
    else:
        GEN_CPU = PROXY_CPU = str(cpus[0])
        sys.stderr.write("warning: only one CPU; proxy and load generator share CPU %s\n" % GEN_CPU)
    try:
        os.sched_setaffinity(0, {int(GEN_CPU)})
    except OSError:
        pass
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    check_ports()
    t_start = time.time()
    steal0 = steal_ticks()
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    h = Harness(a)
    log("scratch dir %s; sections %s; proxies %s; %d run(s) × %d s" % (
        BENCH, ",".join(a.sections), ",".join(a.proxies), a.runs, a.duration))
    try:
        h.write_www()
        h.check_switchyard_binary()
        h.start_upstream()
        for sec in EXEC_ORDER:
            if sec not in a.sections:
                continue
            log("=== section %s" % sec)
            try:
                getattr(h, "sec_" + sec)()
            except (SystemExit, KeyboardInterrupt):
                raise
            except Exception as e:
                import traceback
                traceback.print_exc()
                h.notes.append("section %s failed: %s: %s" % (sec, type(e).__name__, e))
    finally:
        cleanup()
    steal1 = steal_ticks()
    meta = machine_meta(h, (steal1[0] - steal0[0], steal1[1] - steal0[1], (time.time() - t_start) / 60))
    meta["date"] = date
    shown, skip = [], False
    for x in argv:
        if skip:
            skip = False
        elif x == "--scratch":
            skip = True
        elif not x.startswith("--scratch="):
            shown.append(x)
    import shlex
    meta["cmd"] = " ".join(["bench/run.sh"] + [shlex.quote(x) for x in shown])
    h.notes.append("Total benchmark time: %.1f min." % ((time.time() - t_start) / 60))
    # The raw results first: a run of a quarter of an hour is not lost to a rendering error.
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    jpath = os.path.splitext(a.out)[0] + ".json"
    with open(jpath, "w") as f:
        json.dump({"meta": meta, "args": {k: v for k, v in vars(a).items()}, "results": h.results,
                   "notes": h.notes}, f, indent=1, default=str)
    md = render(h, meta)
    sys.stdout.write(md + "\n")
    with open(a.out, "w") as f:
        f.write(md + "\n")
    log("wrote %s and %s" % (a.out, jpath))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    finally:
        if STARTED:
            cleanup()
