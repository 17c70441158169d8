"""Check carrier.xml with a real sipp on loopback, playing Asterisk's side of each call.

    python3 docker/sipp/check_carrier.py        (needs `sipp`: Debian's sip-tester)

Starts sipp with carrier.xml on 127.0.0.1 (a free port, audio made by make_pcap.py in a
temporary directory), then for each number: sends an INVITE with an SDP offer, answers
what sipp answers as Asterisk would (ACK, CANCEL after ringing, BYE after the greeting),
measures the greeting's length from the RTP it receives, and prints one line per case.
Exits 1 if any case differs from the table in carrier.xml. Everything stays on 127.0.0.1
and every wait is bounded; sipp is stopped at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Case:
    number: str
    finals: tuple[int, ...]  # status codes of the INVITE transaction, in order (1xx too)
    greeting_s: float | None = None  # answered: seconds of tone expected


CASES = [
    Case("+12025550486", (486,)),
    Case("+12025550404", (404,)),
    Case("+12025550503", (503,)),
    Case("+12025550603", (603,)),
    Case("+12025550480", (480,)),
    Case("+12025550408", (180, 487)),
    Case("+12025550666", (180, 200), greeting_s=4.0),
    Case("+12025550777", (180, 200), greeting_s=0.8),
    Case("+12025550100", (180, 200), greeting_s=0.8),
]


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class Leg:
    """Asterisk's side of one dialog, over one UDP socket."""

    def __init__(self, sipp_port: int) -> None:
        self.peer = (HOST, sipp_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(TIMEOUT_S)
        self.port = self.sock.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((HOST, 0))
        self.call_id = uuid.uuid4().hex
        self.branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        self.to_tag = ""

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()

    def request(self, method: str, uri: str, cseq: int, body: str = "", branch: str = "") -> None:
        headers = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch={branch or self.branch};rport",
            f"From: <sip:autoretry@{HOST}>;tag=ast1",
            f"To: <{uri}>" + (f";tag={self.to_tag}" if self.to_tag else ""),
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:autoretry@{HOST}:{self.port}>",
            "Max-Forwards: 70",
        ]
        if body:
            headers.append("Content-Type: application/sdp")
        headers.append(f"Content-Length: {len(body)}")
        self.sock.sendto(("\r\n".join(headers) + "\r\n\r\n" + body).encode(), self.peer)

    def response(self) -> tuple[int, str, str]:
        """(status, CSeq method, whole text) of the next response."""
        text = self.sock.recv(65535).decode(errors="replace")
        first, _, rest = text.partition("\r\n")
        code = int(first.split()[1])
        method = ""
        for line in rest.split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "cseq":
                method = value.split()[-1]
            if name.strip().lower() == "to" and ";tag=" in value:
                self.to_tag = value.split(";tag=")[1].split(";")[0].strip()
        return code, method, text

    def sdp(self) -> str:
        return (
            f"v=0\r\no=ast 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {self.rtp.getsockname()[1]} RTP/AVP 0 8\r\n"
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        )

    def greeting_s(self, listen_s: float) -> tuple[float, int]:
        """Seconds of non-silent audio and packets received within ``listen_s``."""
        loud = packets = 0
        deadline = time.monotonic() + listen_s
        while (left := deadline - time.monotonic()) > 0:
            self.rtp.settimeout(left)
            try:
                data = self.rtp.recv(2048)
            except TimeoutError:
                break
            packets += 1
            payload = data[12:]
            loud += sum(b not in (0xFF, 0x7F) for b in payload)
        return loud / 8000, packets


def run_case(case: Case, sipp_port: int) -> str | None:
    """None when sipp behaved as the table says, else what went wrong."""
    leg = Leg(sipp_port)
    uri = f"sip:{case.number}@sip.carrier.example:{sipp_port}"
    try:
        leg.request("INVITE", uri, 1, leg.sdp())
        codes: list[int] = []
        while not codes or codes[-1] < 200 or codes[-1] == 180:
            code, method, _ = leg.response()
            if code == 100 or method != "INVITE":
                continue
            codes.append(code)
            if code == 180 and 487 in case.finals:
                time.sleep(0.5)  # ringing: Asterisk gives up (Originate timeout), CANCEL
                leg.request("CANCEL", uri, 1, branch=leg.branch)
                cancel_code, cancel_method, _ = leg.response()
                if (cancel_code, cancel_method) != (200, "CANCEL"):
                    return f"CANCEL got {cancel_code} {cancel_method}"
            if code >= 200:
                break
        leg.request("ACK", uri, 1, branch="z9hG4bK" + uuid.uuid4().hex[:16])
        if tuple(codes) != case.finals:
            return f"responses {codes}, expected {list(case.finals)}"
        if case.greeting_s is not None:
            heard, packets = leg.greeting_s(case.greeting_s + 1.5)
            if packets < 50 or abs(heard - case.greeting_s) > 0.1:
                return f"greeting {heard:.2f} s in {packets} packets"
            leg.request("BYE", uri, 2, branch="z9hG4bK" + uuid.uuid4().hex[:16])
            code, method, _ = leg.response()
            if (code, method) != (200, "BYE"):
                return f"BYE got {code} {method}"
            return None
        return None
    finally:
        leg.close()


def check_options(sipp_port: int) -> str | None:
    leg = Leg(sipp_port)
    try:
        leg.request("OPTIONS", f"sip:sip.carrier.example:{sipp_port}", 1)
        code, method, _ = leg.response()
        return None if (code, method) == (200, "OPTIONS") else f"OPTIONS got {code} {method}"
    finally:
        leg.close()


@contextlib.contextmanager
def sipp(workdir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    args = [
        "sipp", "-sf", str(HERE / "carrier.xml"), "-i", HOST, "-p", str(port),
        "-mi", HOST, "-mp", str(free_port()), "-nostdin",
        "-trace_logs", "-log_file", str(workdir / "sipp.log"),
        "-trace_err", "-error_file", str(workdir / "sipp_errors.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)  # sipp has no readiness signal; a too-early INVITE is retried below
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"sipp exited at once: {err.strip()}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    if shutil.which("sipp") is None:
        print("sipp not found: apt-get install sip-tester", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    import make_pcap

    with tempfile.TemporaryDirectory(prefix="autoretry-sipp-") as tmp:
        workdir = Path(tmp)
        make_pcap.main(["make_pcap.py", tmp])
        port = free_port()
        failures = 0
        with sipp(workdir, port):
            results = [("OPTIONS (qualify)", check_options(port))]
            results += [(c.number, run_case(c, port)) for c in CASES]
        for name, problem in results:
            failures += problem is not None
            mark = "ok  " if problem is None else "FAIL"
            print(f"{mark} {name}: {problem or 'as the table says'}")
        log = workdir / "sipp.log"
        if log.exists():
            print("sipp log:\n" + log.read_text().strip())
        errors = workdir / "sipp_errors.log"
        if errors.exists() and errors.read_text().strip():
            print("sipp errors:\n" + errors.read_text().strip())
        print(f"{len(results) - failures} passed, {failures} failed")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
