#!/usr/bin/env python3
"""Trace consul-lite's lock-held primary failover step by step, on loopback.

    scripts/consul-failover-trace.py [--clients 5] [--rounds 3] [--lock-delay 1s] [--faults-first] [--net 93]
                                     [--bin PATH] [--keep DIR]

Each round starts 3 servers (127.NET.R.2-4) and N client agents (127.NET.R.10+, each with
-primary-http on :8080), waits until one primary serves, SIGKILLs the primary's agent, polls
every other node's primary service every 20 ms until one answers 200, and then reads the
agents' logs (RUST_LOG=info,leader_failover=debug) for the steps in between:

    kill -> a server's gossip declares the node failed (serf: EventMemberFailed)
         -> the leader marks its serfHealth critical (its session invalidated, the lock released)
         -> the new primary's watch shows the key free -> acquire (refused inside the
            lock-delay?) -> acquired -> confirmed: local role primary -> HTTP 200 (poller)

Times are seconds after the kill, on this machine's wall clock (the agents and the poller
share it). The binary defaults to the one scripts/build-agent.sh consul-lite builds. Every
agent is started by this script and killed by its PID at the end of the round.
"""

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVERS = 3


def default_bin():
    arch = os.uname().machine
    return os.path.join(ROOT, "target", f"{arch}-unknown-linux-gnu", "consul", "consul-lite")


def get(url, timeout=0.3):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except Exception:
        return None, b""


def poll(what, timeout, every=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    return None


def log_time(line):
    stamp = line.split(" ", 1)[0]
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def first(path, pattern, after=0.0):
    """The time of the first line of `path` matching `pattern` at or after `after`."""
    regex = re.compile(pattern)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if regex.search(line):
                    t = log_time(line)
                    if t is not None and t >= after:
                        return t
    except FileNotFoundError:
        pass
    return None


def count(path, pattern, after=0.0, before=float("inf")):
    regex = re.compile(pattern)
    n = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if regex.search(line):
                    t = log_time(line)
                    if t is not None and after <= t <= before:
                        n += 1
    except FileNotFoundError:
        pass
    return n


class Cluster:
    def __init__(self, args, round_no, base):
        self.args = args
        self.base = base
        self.net = f"127.{args.net}.{round_no}"
        self.procs = {}
        self.logs = {}

    def spawn(self, name, flags):
        log = os.path.join(self.base, f"{name}.log")
        env = dict(os.environ, RUST_LOG=self.args.rust_log)
        with open(log, "ab") as out:
            self.procs[name] = subprocess.Popen(
                [self.args.bin, "agent", "-node", name] + flags,
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.logs[name] = log

    def common(self, ip):
        return ["-bind", ip, "-client", ip, "-http-port", "8500", "-serf-lan-port", "8301",
                "-dns-port", "-1"]

    def start(self):
        seeds = [f"{self.net}.{2 + k}:8301" for k in range(SERVERS)]
        for k in range(SERVERS):
            ip = f"{self.net}.{2 + k}"
            joins = sum((["-retry-join", s] for s in seeds if not s.startswith(ip + ":")), [])
            self.spawn(f"server{k}", ["-server", "-bootstrap-expect", str(SERVERS), "-data-dir",
                                      os.path.join(self.base, f"server{k}-data"), "-server-port", "8300"]
                       + self.common(ip) + joins)
        leader = poll(lambda: (lambda s, b: s == 200 and len(b) > 2)(*get(f"http://{self.net}.2:8500/v1/status/leader")), 30)
        if not leader:
            raise RuntimeError("no leader within 30 s")
        for i in range(self.args.clients):
            ip = self.client_ip(i)
            joins = sum((["-retry-join", s] for s in seeds), [])
            self.spawn(f"node{i}", self.common(ip) + joins + ["-primary-http", f"{ip}:8080",
                                                               "-primary-lock-delay", self.args.lock_delay])

    def client_ip(self, i):
        return f"{self.net}.{10 + i}"

    def primaries(self, skip=()):
        return [i for i in range(self.args.clients)
                if i not in skip and get(f"http://{self.client_ip(i)}:8080/", 0.2)[0] == 200]

    def status(self, name):
        """`name`'s status in server0's member list (1 alive, 4 failed)."""
        import json
        code, body = get(f"http://{self.net}.2:8500/v1/agent/members", 1.0)
        if code != 200:
            return None
        for m in json.loads(body):
            if m.get("Name") == name:
                return m.get("Status")
        return None

    def faults_first(self, primary):
        """What `cluster-bench designs` does before the primary kill: SIGKILL an application
        node, SIGSTOP another until it is declared failed, SIGCONT it until it is alive."""
        others = [i for i in range(self.args.clients) if i != primary]
        killed, stopped = others[-1], others[-2]
        self.procs[f"node{killed}"].send_signal(signal.SIGKILL)
        poll(lambda: self.status(f"node{killed}") == 4, 30, 0.1)
        self.procs[f"node{stopped}"].send_signal(signal.SIGSTOP)
        t = time.time()
        poll(lambda: self.status(f"node{stopped}") == 4, 30, 0.1)
        self.procs[f"node{stopped}"].send_signal(signal.SIGCONT)
        poll(lambda: self.status(f"node{stopped}") == 1, 60, 0.1)
        print(f"  (faults first: node{killed} killed, node{stopped} stopped {time.time() - t:.1f} s and continued)")
        self.dead = {killed}

    def stop(self):
        for name, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 5
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def one_round(args, round_no):
    base = tempfile.mkdtemp(prefix=f"failover-trace-r{round_no}-", dir=args.keep)
    c = Cluster(args, round_no, base)
    try:
        c.start()
        p = poll(lambda: (lambda ps: ps if len(ps) == 1 else None)(c.primaries()), 60, 0.2)
        if not p:
            raise RuntimeError("no single primary within 60 s")
        time.sleep(args.steady)
        c.dead = set()
        if args.faults_first:
            c.faults_first(p[0])
        p = poll(lambda: (lambda ps: ps if len(ps) == 1 else None)(c.primaries(c.dead)), 10, 0.2)
        victim = p[0]
        others = [i for i in range(args.clients) if i != victim and i not in c.dead]
        served = {}
        critical = {}
        stop = threading.Event()

        def poller(i):
            while not stop.is_set() and time.time() < t_kill + 60:
                if get(f"http://{c.client_ip(i)}:8080/", 0.2)[0] == 200:
                    served.setdefault(i, time.time())
                    return
                time.sleep(0.02)

        def catalog():
            url = f"http://{c.net}.2:8500/v1/health/node/node{victim}?stale"
            while not stop.is_set() and time.time() < t_kill + 60:
                s, body = get(url)
                if s == 200 and b'"serfHealth"' in body and b'"critical"' in body:
                    critical["at"] = time.time()
                    return
                time.sleep(0.02)

        t_kill = time.time()
        c.procs[f"node{victim}"].send_signal(signal.SIGKILL)
        threads = [threading.Thread(target=poller, args=(i,)) for i in others]
        threads.append(threading.Thread(target=catalog))
        for t in threads:
            t.start()
        poll(lambda: served or None, 60, 0.02)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        new = min(served, key=served.get) if served else None
        rel = lambda t: None if t is None else t - t_kill
        nl = c.logs.get(f"node{new}") if new is not None else None
        name = f"node{victim}"
        steps = []
        failed = [first(c.logs[f"server{k}"], rf"EventMemberFailed: {name} ", t_kill) for k in range(SERVERS)]
        steps.append(("a server's gossip declares it failed", min((f for f in failed if f), default=None)))
        marked = [first(c.logs[f"server{k}"], rf"marking health critical.*{name}\b", t_kill) for k in range(SERVERS)]
        steps.append(("the leader marks serfHealth critical", min((m for m in marked if m), default=None)))
        steps.append(("server0's catalog shows it critical (poller)", critical.get("at")))
        if nl:
            steps.append(("new primary: watch shows the key free", first(nl, r"lock election: the key is free", t_kill)))
            steps.append(("new primary: first acquire sent", first(nl, r"lock election: acquire sent", t_kill)))
            steps.append(("new primary: last acquire sent", None))
            steps.append(("new primary: acquired", first(nl, r"lock election: acquired", t_kill)))
            steps.append(("new primary: role primary", first(nl, r"local role changed.*to=primary", t_kill)))
            refused = count(nl, r"lock election: acquire refused", t_kill)
            sent = []
            regex = re.compile(r"lock election: acquire sent")
            with open(nl, encoding="utf-8", errors="replace") as f:
                sent = [log_time(l) for l in f if regex.search(l)]
            sent = [s for s in sent if s and s >= t_kill]
            steps[5] = ("new primary: last acquire sent", sent[-1] if sent else None)
        else:
            refused = None
        steps.append(("HTTP 200 from the new primary (20 ms poller)", served.get(new)))
        print(f"round {round_no}: killed node{victim} (primary), new primary node{new}, "
              f"acquires refused: {refused}; logs in {base}")
        for what, t in steps:
            r = rel(t)
            print(f"  {'-' if r is None else f'{r:6.3f}'}  {what}")
        return rel(served.get(new))
    finally:
        c.stop()
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=default_bin())
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lock-delay", default="1s", help="-primary-lock-delay of the clients")
    ap.add_argument("--net", type=int, default=93, help="second octet of the 127.x.y.z addresses")
    ap.add_argument("--steady", type=float, default=3.0, help="seconds between a primary serving and the kill")
    ap.add_argument("--faults-first", action="store_true",
                    help="first SIGKILL one node and SIGSTOP/SIGCONT another, as cluster-bench designs does")
    ap.add_argument("--keep", default=None, help="keep the logs in this directory")
    ap.add_argument("--rust-log", default="info,leader_failover=debug,consul_lite::primary=debug")
    args = ap.parse_args()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    gaps = []
    for r in range(args.rounds):
        try:
            gap = one_round(args, r)
        except RuntimeError as e:
            print(f"round {r}: {e}")
            continue
        if gap is not None:
            gaps.append(gap)
    if gaps:
        gaps.sort()
        print(f"failover (kill to HTTP 200), {len(gaps)} rounds: median {gaps[len(gaps) // 2]:.3f} s, "
              f"min {gaps[0]:.3f}, max {gaps[-1]:.3f}")
    return 0 if gaps else 1


if __name__ == "__main__":
    sys.exit(main())
