#!/usr/bin/env python3
"""Profile Envoy (perf) while wrk drives one setup of the benchmark.

    .venv/bin/python bench/profile.py 2a [seconds]

Starts the token service, the echo upstream and Envoy exactly as
bench/bench.py does (same pinning, same configuration, 1,000 tokens, a
warm-up), then runs `perf record -g` on the Envoy process during a wrk run
and prints `perf report` grouped by shared object and by symbol. Wasm code
that V8 compiled has no symbols: it shows up as unknown addresses (JIT).
Output kept in results/profile-<setup>.txt (perf.data is removed). Needs
perf (linux-perf).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    sid = sys.argv[1] if len(sys.argv) > 1 else "2a"
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    setup = next(s for s in bench.SETUPS if s[0] == sid)
    os.makedirs(bench.RESULTS, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="profile-", dir=bench.RESULTS)
    upstream_port = bench.free_port()
    bench.spawn("echo-upstream", bench.pinned(bench.CPU_REST, [
        os.path.join(bench.ROOT, "target", "release", "echo-upstream"),
        "--listen", f"127.0.0.1:{upstream_port}"]), os.path.join(workdir, "echo.log"))
    bench.wait_until("echo upstream", 20,
                     lambda: bench.request(upstream_port, "GET", "/")[0] == 200)
    service = bench.Service(workdir)
    try:
        tokens = [f"PT{i:05d}{os.urandom(6).hex()}" for i in range(bench.TOKENS)]
        service.seed(tokens)
        tokens_file = os.path.join(workdir, "tokens.txt")
        with open(tokens_file, "w") as f:
            f.write("\n".join(tokens) + "\n")
        envoy = bench.Envoy(workdir, sid, setup[3](workdir), upstream_port, service.port)
        try:
            bench.check_setup(setup, envoy, service, tokens[0])
            bench.wrk(envoy.port, bench.WARMUP, tokens_file, setup[4])
            data = os.path.join(workdir, "perf.data")
            result = {}
            load = threading.Thread(target=lambda: result.update(
                bench.wrk(envoy.port, seconds + 2, tokens_file, setup[4])))
            load.start()
            subprocess.run(["perf", "record", "-q", "-g", "-o", data, "-p",
                            str(envoy.proc.pid), "--", "sleep", str(seconds)], check=True,
                           timeout=seconds + 60)
            load.join()
        finally:
            envoy.close()
        out = []
        for sort in ("dso", "sym"):
            r = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", sort,
                                "--stdio", "-g", "none", "--percent-limit", "0.7"],
                               capture_output=True, text=True, timeout=300)
            out.append(r.stdout)
        # Envoy CPU per request, split by where it ran: the samples' total
        # (ns) over the requests wrk sent during the recording.
        total_ns = int(re.search(r"Event count \(approx.\): (\d+)", out[0]).group(1))
        requests = result["rps"] * seconds
        split = []
        for pct, dso in re.findall(r"^\s+([\d.]+)%\s+(.+?)\s*$", out[0], re.M):
            name = "JIT (Wasm code compiled by V8)" if dso.startswith("[JIT]") else dso
            split.append(f"  {name:34} {float(pct) * total_ns / 100 / requests / 1000:7.1f} µs")
        summary = (f"setup {sid}: {result['rps']:.0f} req/s, Envoy CPU "
                   f"{total_ns / requests / 1000:.1f} µs per request:\n" + "\n".join(split))
        out.insert(0, summary + "\n")
        text = "\n".join(out)
        path = os.path.join(bench.RESULTS, f"profile-{sid}.txt")
        with open(path, "w") as f:
            f.write(text)
        print(text)
        print(f"written {path}")
    finally:
        service.close()
        bench.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
