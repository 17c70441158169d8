"""AGI hook costs: FastAGI server time per AMD request, start-up of each process script.

    .venv/bin/python bench/agi_hooks.py [--requests 2000] [--runs 30]

FastAGI: the server runs here; a child process plays Asterisk (answers every command at
once) for N sequential AMD requests over TCP on 127.0.0.1. Printed: this process's CPU
time per request (the server's own cost) and the wall time per request seen by the peer.
Goal: < 2 ms per request.

Process AGI: each agi/ script is started N times with a complete AMD/manage/report
session on stdin, next to a bare ``python3 -c 'import asterisk.agi'`` in the same run.
Printed: mean wall and CPU (user+sys of the children) per start. Goal: <= 1.2x the bare
import.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENV_BLOCK = (
    "agi_request: {script}\nagi_channel: SIP/sipp-0000001a\nagi_uniqueid: 1795861969.76\n"
    "agi_context: autoretry-connect\nagi_extension: example\n"
)
SESSIONS = {
    "amd": [
        "200 result=1 (c1|a1|1)",
        "200 result=0",
        "200 result=1 (HUMAN|HUMAN-800-800)",
        "200 result=0",
        "200 result=1",
        "200 result=1",
    ],
    "manage": [
        "200 result=1 (|BUSY|17|PJSIP/carrier-00000001)",
        "200 result=1 (SIP 486 Busy Here)",
        "200 result=0",
        "200 result=1",
    ],
    "report": ["200 result=1 (c1|a1|1|3|BUSY|17)", "200 result=0"],
}


def client(port: int, requests: int) -> None:
    """Asterisk's side, in a child process: N AMD requests, replies sent at once."""
    head = "agi_network: yes\nagi_network_script: amd\n" + ENV_BLOCK.format(script="amd")
    started = time.perf_counter()
    for _ in range(requests):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall((head + "\n").encode())
            stream = sock.makefile("rwb", buffering=0)
            for reply in SESSIONS["amd"]:
                if not stream.readline():
                    raise SystemExit("server closed early")
                stream.write(reply.encode() + b"\n")
            if stream.read():
                raise SystemExit("unexpected command")
    wall = (time.perf_counter() - started) / requests
    print(f"  peer wall time per request:  {wall * 1000:.3f} ms")


async def fastagi(requests: int) -> None:
    from ami_listener.config_sections import AgiSettings
    from ami_listener.fastagi import FastAgiServer

    async with FastAgiServer(AgiSettings(), listen=("127.0.0.1", 0)) as server:
        port = server.address[1]
        cpu = time.process_time()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", str(port), "--requests", str(requests)
        )
        await proc.wait()
        cpu = time.process_time() - cpu
        served = server.served
    print(f"  server CPU per AMD request:   {cpu / requests * 1000:.3f} ms  (goal < 2 ms)")
    print(f"  served: {served}")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(jobs: dict[str, tuple[list[str], str]], runs: int) -> dict[str, tuple[float, float]]:
    """Mean (wall, cpu) per start of each job, the jobs interleaved run by run so that
    machine noise hits them alike. Bytecode caching is on and each job has one unmeasured
    warm-up run, as on an Asterisk host where pip compiled the package (else every start
    recompiles agi_handlers.py, ~7 ms)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    totals = {name: [0.0, 0.0] for name in jobs}
    for run in range(runs + 1):
        for name, (argv, stdin) in jobs.items():
            before_cpu, before = children_cpu(), time.perf_counter()
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise SystemExit(f"{argv} failed: {done.stderr}")
            if run:
                totals[name][0] += time.perf_counter() - before
                totals[name][1] += children_cpu() - before_cpu
    return {name: (wall / runs, cpu / runs) for name, (wall, cpu) in totals.items()}


def scripts(runs: int) -> None:
    bare = "python3 -c 'import asterisk.agi'"
    jobs = {bare: ([sys.executable, "-c", "import asterisk.agi"], "")}
    for route, replies in SESSIONS.items():
        name = f"autoretry-{route}.py"
        stdin = ENV_BLOCK.format(script=name) + "\n" + "".join(r + "\n" for r in replies)
        jobs[name] = ([sys.executable, str(ROOT / "agi" / name)], stdin)
    results = timed(jobs, runs)
    bare_wall, bare_cpu = results[bare]
    for name, (wall, cpu) in results.items():
        print(
            f"  {name:34} wall {wall * 1000:6.1f} ms  cpu {cpu * 1000:6.1f} ms"
            f"  ({wall / bare_wall:.2f}x wall, {cpu / bare_cpu:.2f}x cpu)"
        )
    print("  goal: each script <= 1.2x the bare import")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--client", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client(args.client, args.requests)
        return
    print(f"FastAGI, {args.requests} sequential AMD requests over TCP:")
    asyncio.run(fastagi(args.requests))
    print(f"Process AGI start-up, mean of {args.runs} runs each (same run, same python):")
    scripts(args.runs)


if __name__ == "__main__":
    main()
