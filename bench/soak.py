#!/usr/bin/env python3
"""make soak: SOAK_SECS (60) of mixed traffic against the token service and
through Envoy, with what `make run` ships (envoy/harness.json: Get, Set,
request headers, everything published, cache invalidation on):

- introspections and attribute merges sent to the token service itself;
- GetOAuthV2Info and SetOAuthV2Info requests through Envoy;
- a revocation now and then (each then asked through Envoy: it must be
  refused within poll_ms + 1 s).

Reports every error (goal: 0), and the RSS of the token service and of
Envoy and the size of the SQLite WAL at the start, every 10 s and at the end
(goal: bounded). Writes results/soak-latest.md; exits 1 on any error. All
servers on 127.0.0.1; the load is bounded by time and by its 8 threads.
Settings (environment): SOAK_SECS (60), SOAK_TOKENS (2000).
"""

import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402 - the benchmark's processes and configs

SECS = int(os.environ.get("SOAK_SECS", "60"))
TOKENS = int(os.environ.get("SOAK_TOKENS", "2000"))


def harness_chain_with_invalidation(workdir):
    """envoy/harness.json as shipped (invalidation on), with the
    benchmark's key."""
    with open(os.path.join(b.ROOT, "envoy", "harness.json")) as f:
        p = json.load(f)
    p["token_service"]["credentials"] = f"Bearer {b.SERVICE_KEY}"
    return b.generated(workdir, json.dumps(p))


def wal_bytes(dbdir):
    path = os.path.join(dbdir, "tokens.db-wal")
    return os.path.getsize(path) if os.path.exists(path) else 0


def main():
    os.makedirs(b.RESULTS, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="soak-", dir=b.RESULTS)
    dbdir = os.path.join(workdir, "db")
    os.makedirs(dbdir)
    upstream_port = b.free_port()
    b.spawn("echo-upstream", [os.path.join(b.ROOT, "target", "release", "echo-upstream"),
                              "--listen", f"127.0.0.1:{upstream_port}"],
            os.path.join(workdir, "echo-upstream.log"))
    b.wait_until("echo upstream", 20, lambda: b.request(upstream_port, "GET", "/")[0] == 200)
    # The store on disk (not tmpfs): the WAL is what is watched.
    service = b.Service(workdir, dbdir=dbdir)
    tokens = [f"SK{i:05d}{os.urandom(6).hex()}" for i in range(TOKENS)]
    service.seed(tokens)
    envoy = b.Envoy(workdir, "soak", harness_chain_with_invalidation(workdir), upstream_port,
                    service.port)
    errors, counts = [], {}
    lock = threading.Lock()
    revoked, revoking = {}, set()
    stop_at = time.monotonic() + SECS

    def note(kind, ok, detail=""):
        with lock:
            counts[kind] = counts.get(kind, 0) + 1
            if not ok:
                errors.append(f"{kind}: {detail}")

    def service_worker(seed):
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        auth = {"authorization": f"Bearer {b.SERVICE_KEY}"}
        while time.monotonic() < stop_at:
            t = rng.choice(tokens)
            if rng.random() < 0.7:
                conn.request("POST", "/oauth2/introspect",
                             body=f"token={urllib.parse.quote(t)}&token_type_hint=access_token",
                             headers={**auth, "content-type": "application/x-www-form-urlencoded"})
                r = conn.getresponse()
                data = r.read()
                note("introspect", r.status == 200 and b'"active"' in data, f"{r.status}")
            else:
                body = json.dumps({"token": t, "attributes": [
                    {"name": "soak", "value": str(rng.randrange(1000))}]})
                conn.request("POST", "/v1/accesstokens/attributes", body=body,
                             headers={**auth, "content-type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                # A token the soak revoked (or is revoking) answers 409.
                with lock:
                    gone = t in revoking
                note("merge", r.status == 200 or (gone and r.status == 409),
                     f"{r.status} {data[:120]!r}")
        conn.close()

    def envoy_worker(seed):
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
        while time.monotonic() < stop_at:
            t = rng.choice(tokens)
            with lock:
                at = revoked.get(t)
                changing = t in revoking and at is None
            path = f"/soak?access_token={urllib.parse.quote(t)}"
            if rng.random() < 0.2:
                path += f"&department_id=d{rng.randrange(100)}"
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            if changing:
                continue  # being revoked: either answer is right
            if at is None:
                note("envoy", r.status == 200, f"{r.status} for a valid token")
            elif time.monotonic() - at > 2.0:
                note("envoy-revoked", r.status != 200, f"{r.status} for a token revoked "
                     f"{time.monotonic() - at:.1f} s ago")
        conn.close()

    def revoker():
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        rng = random.Random(7)
        while time.monotonic() < stop_at - 3:
            time.sleep(1)
            t = rng.choice(tokens)
            with lock:
                revoking.add(t)
            service.revoke(conn, t)
            with lock:
                revoked[t] = time.monotonic()
            note("revoke", True)
        conn.close()

    samples = []

    def sample(at):
        samples.append({"t": at, "service_rss_kib": b.rss_kib(service.proc.pid),
                        "envoy_rss_kib": b.rss_kib(envoy.proc.pid), "wal_bytes": wal_bytes(dbdir)})

    try:
        started = time.monotonic()
        sample(0)
        threads = ([threading.Thread(target=service_worker, args=(i,)) for i in range(3)]
                   + [threading.Thread(target=envoy_worker, args=(10 + i,)) for i in range(4)]
                   + [threading.Thread(target=revoker)])
        for t in threads:
            t.start()
        next_sample = 10
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
            if time.monotonic() - started >= next_sample:
                sample(next_sample)
                next_sample += 10
        for t in threads:
            t.join()
        end = round(time.monotonic() - started)
        if samples[-1]["t"] != end:
            sample(end)
    finally:
        envoy.close()
        service.close()
        b.stop_all()

    lines = [f"# make soak, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", "",
             f"{SECS} s, {TOKENS} tokens, envoy/harness.json through Envoy (cache invalidation on).",
             "", "Requests: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
             f"Errors: {len(errors)}", "",
             "| t (s) | token service RSS (MiB) | Envoy RSS (MiB) | SQLite WAL (MiB) |",
             "|---:|---:|---:|---:|"]
    for s in samples:
        lines.append(f"| {s['t']} | {s['service_rss_kib'] / 1024:.1f} | "
                     f"{s['envoy_rss_kib'] / 1024:.1f} | {s['wal_bytes'] / 1048576:.1f} |")
    lines.append("")
    for e in errors[:20]:
        lines.append(f"- {e}")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(b.RESULTS, "soak-latest.md"), "w") as f:
        f.write(text)
    print(text)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
