#!/usr/bin/env python3
"""Instructions per request inside Envoy, per setup of bench/bench.py: every
setup is a listener of ONE Envoy that runs under valgrind's callgrind, so the
counts are the same whatever else the machine does (docs/performance.md#tools).

For each setup: warm-up requests, then callgrind's counters are zeroed, M
requests are sent (seeded tokens in turn, on 4 keep-alive connections), the
counters are dumped; Ir / M is the setup's instructions per request (all of
Envoy's threads: the worker, the main thread, the V8 code). Two windows per
setup, the lower one kept.

    .venv/bin/python bench/callgrind_envoy.py [SETUP,...]   (default: 1,0,2,2m,2f,2n,2nl,2d)

Settings: CG_REQUESTS (M, 300), CG_WARMUP (200). Needs what make bench
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


def requests(port, tokens, n, first=0):
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for _ in range(4)]
    bad = 0
    try:
        for i in range(n):
            c = conns[i % 4]
            c.request("GET", f"/get?access_token={tokens[(first + i) % len(tokens)]}")
            r = c.getresponse()
            r.read()
            bad += r.status != 200
    finally:
        for c in conns:
            c.close()
    return bad


def main():
    wanted = sys.argv[1].split(",") if len(sys.argv) > 1 else ["1", "0", "2", "2m", "2f", "2n", "2nl", "2d"]
    setups = [s for s in bench.SETUPS if s[0] in wanted and s[4] == "get"]
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
        base = bench.free_port()
        listeners, ports = [], {}
        for i, setup in enumerate(setups):
            port = base + i
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
                    raise RuntimeError("Envoy under valgrind did not start")
                time.sleep(1)
        results = {}
        for n, setup in enumerate(setups):
            sid, port = setup[0], ports[setup[0]]
            bad = requests(port, tokens, WARM)
            windows = []
            for w in range(2):
                subprocess.run(["callgrind_control", "-z", str(envoy.pid)], capture_output=True)
                bad += requests(port, tokens, M, first=w * M)
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
                    os.remove(dump)
                windows.append(total / M)
            if bad:
                raise RuntimeError(f"setup {sid}: {bad} answers were not 200")
            results[sid] = {"ir_per_request": round(min(windows)), "windows": [round(x) for x in windows]}
            bench.log(f"setup {sid:>3}: {results[sid]['ir_per_request']:>9,} instructions per request")
        bare = results.get("1", {}).get("ir_per_request")
        print()
        print("| setup | instructions per request (Envoy) | ratio to bare |")
        print("|---|---:|---:|")
        for setup in setups:
            r = results[setup[0]]["ir_per_request"]
            ratio = f"{r / bare:.2f}" if bare else ""
            print(f"| {setup[1]} | {r:,} | {ratio} |")
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
