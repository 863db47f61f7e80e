#!/usr/bin/env python3
"""Instructions per request inside Envoy, per setup of bench/bench.py: every
setup is a listener of ONE Envoy that runs under valgrind's callgrind, so the
counts are the same whatever else the machine does (docs/performance.md#tools).

For each setup: warm-up requests, then callgrind's counters are zeroed, M
requests are sent (seeded tokens in turn, on 4 keep-alive connections, as
the setup's wrk mode sends them: in the query, or in Authorization: Bearer
for "bearer"), the counters are dumped; Ir / M is the setup's instructions
per request (all of Envoy's threads: the worker, the main thread, the V8
code). Two windows per setup, the lower one kept. Setups of wrk mode "set"
(a write per request) are left out. A setup that bench.COMPARED reads
against another (2v, 2c against 2) also gets its ratio to that one when
both are measured.

    .venv/bin/python bench/callgrind_envoy.py [SETUP,...]   (default: 1,0,2,2m,2f,2n,2nl,2d,N,Nn,Nd,5)

Settings: CG_REQUESTS (M, 300), CG_WARMUP (200), CG_KEEP (1: keep each
window's callgrind dump as results/callgrind-setup-<SETUP>-<window>.out,
for callgrind_annotate: which of Envoy's functions a setup's instructions
are in; docs/performance.md#the-native-module). Needs what make bench
builds (bench/run.sh) and valgrind. Prints a table and writes
results/callgrind-envoy-<time>.json.
"""

import glob
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the setups, configs and processes of make bench)

M = int(os.environ.get("CG_REQUESTS", "300"))
WARM = int(os.environ.get("CG_WARMUP", "200"))


def requests(port, tokens, n, first=0, mode="get"):
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for _ in range(4)]
    bad = []  # (status, start of the body) of each answer that was not a 200
    try:
        for i in range(n):
            c = conns[i % 4]
            path, headers = bench.setup_request(mode, tokens[(first + i) % len(tokens)])
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                bad.append((r.status, body[:200]))
    finally:
        for c in conns:
            c.close()
    return bad


def main():
    wanted = (sys.argv[1].split(",") if len(sys.argv) > 1
              else ["1", "0", "2", "2m", "2f", "2n", "2nl", "2d", "N", "Nn", "Nd", "5"])
    setups = [s for s in bench.SETUPS if s[0] in wanted
              and (s[4] == "get" or s[4].startswith("bearer"))]
    unknown = [w for w in wanted if not any(s[0] == w for s in bench.SETUPS)]
    if unknown or not setups:
        sys.exit(f"callgrind_envoy: {'unknown setup ' + ','.join(unknown) if unknown else 'nothing to measure'}"
                 f" (setups measured here: {','.join(s[0] for s in bench.SETUPS if s[4] != 'set')})")
    os.makedirs(bench.RESULTS, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="callgrind-", dir=bench.RESULTS)
    upstream_port = bench.free_port()
    bench.UPSTREAM = bench.spawn("echo-upstream", [
        os.path.join(bench.ROOT, "target", "release", "echo-upstream"),
        "--listen", f"127.0.0.1:{upstream_port}"], os.path.join(workdir, "echo-upstream.log"))
    bench.wait_until("echo upstream", 20, lambda: bench.request(upstream_port, "GET", "/")[0] == 200)
    service = bench.Service(workdir)
    envoy = None
    try:
        tokens = [f"CG{i:05d}{os.urandom(6).hex()}" for i in range(50)]
        service.seed(tokens)
        listeners, ports = [], {}
        for setup in setups:
            # A free port each (consecutive ports from one free one could be
            # another process's, and Envoy then exits at start).
            port = bench.free_port()
            while port in ports.values():
                port = bench.free_port()
            config = bench.envoy_config(port, bench.free_port(), setup[3](workdir), upstream_port,
                                        service.port)
            listener = config["static_resources"]["listeners"][0]
            listener["name"] = f"setup-{setup[0]}"
            listeners.append(listener)
            ports[setup[0]] = port
        config["static_resources"]["listeners"] = listeners
        admin = bench.free_port()
        config["admin"] = {"address": bench.sockaddr(admin)}
        path = os.path.join(workdir, "envoy.json")
        with open(path, "w") as f:
            json.dump(config, f)
        out = os.path.join(workdir, "callgrind.out")
        envoy = bench.spawn("envoy", ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
                                      "--dump-line=no", bench.ENVOY, "-c", path, "--concurrency", "1",
                                      "--disable-hot-restart", "-l", "error"],
                            os.path.join(workdir, "envoy.log"))
        last = ports[setups[-1][0]]
        deadline = time.monotonic() + 900
        while True:
            try:
                with socket.create_connection(("127.0.0.1", last), timeout=1):
                    break
            except OSError:
                if envoy.poll() is not None or time.monotonic() > deadline:
                    with open(os.path.join(workdir, "envoy.log"), errors="replace") as f:
                        tail = "".join(f.readlines()[-15:])
                    raise RuntimeError(f"Envoy under valgrind did not start; its log ends:\n{tail}")
                time.sleep(1)
        results = {}
        for n, setup in enumerate(setups):
            sid, port = setup[0], ports[setup[0]]
            mode = setup[4]
            # Under valgrind a setup's first lookups can outlast the
            # callout's timeout_ms (a 503 from the filter): the warm-up is
            # repeated until it is clean; only the measured windows count.
            for attempt in range(3):
                bad = requests(port, tokens, WARM, mode=mode)
                if not bad:
                    break
                bench.log(f"setup {sid:>3}: warm-up {attempt + 1}: {len(bad)} answers not 200 "
                          f"(the first: {bad[0][0]} {bad[0][1][:120]!r}), warming up again")
            windows = []
            for w in range(2):
                subprocess.run(["callgrind_control", "-z", str(envoy.pid)], capture_output=True)
                bad += requests(port, tokens, M, first=w * M, mode=mode)
                tag = f"setup-{sid}-{w}"
                subprocess.run(["callgrind_control", "-d", tag, str(envoy.pid)], capture_output=True)
                time.sleep(0.5)
                total = 0
                for dump in glob.glob(f"{out}.{envoy.pid}*"):
                    with open(dump, errors="replace") as f:
                        text = f.read()
                    if not any(line.rstrip().endswith(f" {tag}") for line in text.splitlines()[:20]
                               if line.startswith(("desc: Trigger:", "# Client Request:"))):
                        continue
                    for line in text.splitlines():
                        if line.startswith(("summary:", "totals:")):
                            total += int(line.split()[1])
                            break
                    if os.environ.get("CG_KEEP") == "1":
                        os.replace(dump, os.path.join(bench.RESULTS, f"callgrind-{tag}.out"))
                    else:
                        os.remove(dump)
                windows.append(total / M)
            if bad:
                raise RuntimeError(f"setup {sid}: {len(bad)} answers were not 200, the first: {bad[:3]}")
            results[sid] = {"ir_per_request": round(min(windows)), "windows": [round(x) for x in windows]}
            bench.log(f"setup {sid:>3}: {results[sid]['ir_per_request']:>9,} instructions per request")
        bare = results.get("1", {}).get("ir_per_request")
        for sid, r in results.items():
            other = bench.COMPARED.get(sid)
            if other in results:
                r["compared_with"] = other
                r["ratio_to_compared"] = round(r["ir_per_request"] / results[other]["ir_per_request"], 4)
                r["difference_to_compared"] = r["ir_per_request"] - results[other]["ir_per_request"]
        print()
        print("| setup | instructions per request (Envoy) | ratio to bare | compared with | ratio to it | difference |")
        print("|---|---:|---:|---|---:|---:|")
        for setup in setups:
            r = results[setup[0]]
            ratio = f"{r['ir_per_request'] / bare:.2f}" if bare else ""
            other = (f"{r['compared_with']} | {r['ratio_to_compared']:.3f} | "
                     f"{r['difference_to_compared']:+,}" if "compared_with" in r else " | | ")
            print(f"| {setup[1]} | {r['ir_per_request']:,} | {ratio} | {other} |")
        # The native module's targets, by instructions per request
        # (docs/performance.md#the-native-module): read, not enforced.
        targets = []
        for sid, goal, what in (("N", 0.62, "everything published to metadata"),
                                ("Nn", 0.85, "narrowed: 3 variables + 3 headers"),
                                ("Nd", 0.90, "nothing published")):
            if sid in results and bare:
                v = bare / results[sid]["ir_per_request"]
                targets.append(f"{'PASS' if v >= goal else 'MISS'}  {sid} ({what}) >= {goal:.2f} of bare "
                               f"Envoy (1): {v:.3f}")
        if "N" in results and "5" in results:
            v = results["5"]["ir_per_request"] / results["N"]["ir_per_request"]
            targets.append(f"{'PASS' if v >= 1.3 else 'MISS'}  N >= 1.3 x setup 5 (ext_authz): {v:.2f}x")
        if targets:
            print()
            print("\n".join(targets))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        with open(os.path.join(bench.RESULTS, f"callgrind-envoy-{stamp}.json"), "w") as f:
            json.dump(results, f, indent=1)
    finally:
        if envoy is not None:
            bench.stop(envoy)
        service.close()
        bench.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
