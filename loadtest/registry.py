#!/usr/bin/env python3
"""The service registry's figures (issue 38), standard library only.

  loadtest/registry.py [--vane target/release/vane] [--pg postgres://postgres@127.0.0.1:5432/registry_bench]

1. Memory per instance: the server's RSS before and after 10,000 instances
   register (ttl 60 s).
2. CPU per heartbeat: wrk renews those 10,000 instances (each PUT the same
   body again) for 10 s; the server's own CPU time (utime + stime from
   /proc/<pid>/stat) over the requests wrk completed, and the machine's busy
   time (/proc/stat) minus wrk's own over the same requests.
3. A burst: 1,000 instances register within a second while a native socket
   follows the service and a `vane watch` agent renders it: messages the
   socket got, files the agent wrote (its writes counter).
4. Membership change to rendered file: 100 times, an instance registers or
   deregisters and the time until the agent's file shows it; p50 and p99.
   With --pg, also across two nodes: registered on one, the agent on the other.
"""

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

TOKEN = "bench-admin-token-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(vane, store_url, work, name):
    port = free_port()
    settings = os.path.join(work, f"{name}.toml")
    with open(settings, "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{port}"\nmax_connections = 20000\n'
                f'[store]\nurl = "{store_url}"\n[auth]\nadmin_tokens = ["{TOKEN}"]\n'
                f'[log]\nlevel = "warn"\n')
    proc = subprocess.Popen([vane, "serve", "--config", settings], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, f"{name}.log"), "w"))
    for _ in range(200):
        try:
            call(port, "GET", "/api/v1/services")
            return proc, port
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{name} did not start; see {work}/{name}.log")


class Conn(threading.local):
    pass


local = Conn()


def call(port, method, path, body=None):
    conns = getattr(local, "conns", None)
    if conns is None:
        conns = local.conns = {}
    conn = conns.get(port) or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conns[port] = conn
    data = json.dumps(body) if body is not None else None
    try:
        conn.request(method, path, body=data, headers={"Authorization": f"Bearer {TOKEN}",
                                                        "Content-Type": "application/json"})
        response = conn.getresponse()
        text = response.read()
    except (http.client.HTTPException, OSError):
        conns.pop(port, None)
        raise
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {text[:200]}")
    return json.loads(text) if text else None


def register(port, service, i, ttl=60):
    body = {"address": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", "port": 8000 + i % 1000,
            "meta": {"zone": "abc"[i % 3]}, "ttl_s": ttl}
    return call(port, "PUT", f"/api/v1/services/{service}/instances/i{i:05d}", body)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def cpu_s(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s():
    parts = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def memory_and_heartbeats(vane, work):
    proc, port = start_server(vane, f"sqlite://{work}/one.db?mode=rwc", work, "one")
    try:
        call(port, "GET", "/api/v1/services/bench")
        time.sleep(1)
        before = rss_kib(proc.pid)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: register(port, "bench", i), range(10_000)))
        time.sleep(1)
        after = rss_kib(proc.pid)
        print(f"memory: {after - before} KiB for 10,000 instances, "
              f"{(after - before) * 1024 / 10_000:.0f} bytes per instance (RSS {before} -> {after} KiB)")
        script = os.path.join(work, "renew.lua")
        with open(script, "w") as f:
            f.write('local n = 0\n'
                    'request = function()\n'
                    '  local i = n % 10000; n = n + 1\n'
                    '  local body = string.format(\'{"address":"10.%d.%d.%d","port":%d,"meta":{"zone":"%s"},"ttl_s":60}\','
                    ' math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256, 8000 + i % 1000,'
                    ' string.sub("abc", i % 3 + 1, i % 3 + 1))\n'
                    f'  return wrk.format("PUT", string.format("/api/v1/services/bench/instances/i%05d", i),'
                    f' {{["Authorization"] = "Bearer {TOKEN}", ["Content-Type"] = "application/json"}}, body)\n'
                    'end\n')
        server_before, busy_before = cpu_s(proc.pid), machine_busy_s()
        children_before = os.times()
        out = subprocess.run(["wrk", "-t1", "-c16", "-d10s", "-s", script, f"http://127.0.0.1:{port}"],
                             capture_output=True, text=True).stdout
        children_after = os.times()
        server_after, busy_after = cpu_s(proc.pid), machine_busy_s()
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        wrk_cpu = (children_after.children_user - children_before.children_user
                   + children_after.children_system - children_before.children_system)
        revision = call(port, "GET", "/api/v1/services/bench")["revision"]
        print(f"heartbeats: {requests} renewals in 10 s ({requests / 10:.0f}/s), wrk -t1 -c16")
        print(f"  server CPU per heartbeat: {(server_after - server_before) / requests * 1e6:.1f} us")
        print(f"  machine busy minus wrk per heartbeat: {(busy_after - busy_before - wrk_cpu) / requests * 1e6:.1f} us")
        print(f"  members unchanged by renewals: revision {revision}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


def ws_follow(port, service, counts, stop):
    """A raw WebSocket client: counts `service` messages until `stop` is set."""
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /api/v1/subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Authorization: Bearer {TOKEN}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    buf = buf.split(b"\r\n\r\n", 1)[1]
    payload = json.dumps({"type": "subscribe", "service": service}).encode()
    mask = os.urandom(4)
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
        except socket.timeout:
            pass
        while len(buf) >= 2:
            length, at = buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    break
                length, at = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    break
                length, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + length:
                break
            opcode, frame, buf = buf[0] & 0x0F, buf[at:at + length], buf[at + length:]
            if opcode == 1 and json.loads(frame).get("type") == "service":
                counts.append(time.monotonic())
    sock.close()


def start_agent(vane, work, port, service, name):
    metrics = free_port()
    dest = os.path.join(work, f"{name}.conf")
    toml = os.path.join(work, f"{name}-watch.toml")
    with open(toml, "w") as f:
        f.write(f'metrics_listen = "127.0.0.1:{metrics}"\n[[resource]]\nname = "{name}"\n'
                f'server = "http://127.0.0.1:{port}"\ntoken = "{TOKEN}"\n'
                f"template = '''{{% for i in service(\"{service}\") %}}{{{{ i.instance_id }}}}\n{{% endfor %}}'''\n"
                f'destination = "{dest}"\ndebounce_ms = 0\n')
    proc = subprocess.Popen([vane, "watch", "--config", toml], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, f"{name}-watch.log"), "w"))
    for _ in range(200):
        if os.path.exists(dest):
            break
        time.sleep(0.05)
    return proc, dest, metrics


def writes(metrics):
    conn = http.client.HTTPConnection("127.0.0.1", metrics, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    return int(re.search(r"vane_watch_writes_total (\d+)", text).group(1))


def burst(vane, work):
    proc, port = start_server(vane, f"sqlite://{work}/burst.db?mode=rwc", work, "burst")
    agent, dest, metrics = start_agent(vane, work, port, "burst", "burst")
    counts, stop = [], threading.Event()
    reader = threading.Thread(target=ws_follow, args=(port, "burst", counts, stop))
    reader.start()
    try:
        time.sleep(1)
        before, written = len(counts), writes(metrics)
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: register(port, "burst", i), range(1000)))
        took = time.monotonic() - started
        time.sleep(2)
        lines = open(dest).read().count("\n")
        print(f"burst: 1,000 registrations in {took:.2f} s; the socket got {len(counts) - before} messages, "
              f"the agent wrote its file {writes(metrics) - written} times (it lists {lines})")
    finally:
        stop.set()
        reader.join()
        agent.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        agent.wait()
        proc.wait()


def latency(vane, work, register_port, agent_port, label, procs):
    agent, dest, _ = start_agent(vane, work, agent_port, "lat", f"lat-{label}")
    samples = []
    try:
        for n in range(100):
            present = n % 2 == 0
            started = time.monotonic()
            if present:
                register(register_port, "lat", 1)
            else:
                call(register_port, "DELETE", "/api/v1/services/lat/instances/i00001")
            while ("i00001" in open(dest).read()) != present:
                if time.monotonic() - started > 10:
                    sys.exit(f"{label}: the file did not follow; see {work}")
                time.sleep(0.002)
            samples.append(time.monotonic() - started)
        samples.sort()
        print(f"change to rendered file ({label}): p50 {samples[49] * 1000:.0f} ms, "
              f"p99 {samples[98] * 1000:.0f} ms, max {samples[-1] * 1000:.0f} ms over 100 changes")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vane", default="target/release/vane")
    parser.add_argument("--pg", help="an empty PostgreSQL database for the two-node figure")
    parser.add_argument("--only-two", action="store_true", help="only the change-to-file figures")
    args = parser.parse_args()
    vane = os.path.abspath(args.vane)
    if not shutil.which("wrk"):
        sys.exit("wrk is needed (apt-get install wrk)")
    work = tempfile.mkdtemp(prefix="vane-registry-")
    if not args.only_two:
        memory_and_heartbeats(vane, work)
        burst(vane, work)
    proc, port = start_server(vane, f"sqlite://{work}/lat.db?mode=rwc", work, "lat")
    latency(vane, work, port, port, "one node", [proc])
    if args.pg:
        a, port_a = start_server(vane, args.pg, work, "node-a")
        b, port_b = start_server(vane, args.pg, work, "node-b")
        latency(vane, work, port_a, port_b, "two nodes over PostgreSQL", [a, b])
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
