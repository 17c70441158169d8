"""Write the far end's audio for the docker demo as pcap files that sipp replays.

    python3 make_pcap.py OUTDIR

machine.pcap: 4.0 s of a 440 Hz tone, then 3 s of silence (AMD: a greeting longer than
1500 ms -> MACHINE, LONGGREETING). human.pcap: 0.3 s silence, 0.8 s tone, then 5 s of
silence (AMD: a short greeting, then 800 ms of silence -> HUMAN). Both are PCMU (payload
type 0) RTP, 20 ms per packet, in Ethernet/IPv4/UDP frames: sipp's play_pcap_audio sends
each UDP payload to the media address Asterisk announced, paced by the capture times.

Generated when the image is built so that no binary audio lives in the repository;
stdlib only.
"""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

RATE = 8000
PTIME_MS = 20
SAMPLES = RATE * PTIME_MS // 1000  # 160 samples (bytes of PCMU) per packet
AMPLITUDE = 8000  # linear 16-bit; far above app_amd's silence_threshold (256)
SILENCE = 0xFF  # PCMU encoding of 0


def ulaw(sample: int) -> int:
    """G.711 mu-law encoding of one linear 16-bit sample."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), clip) + bias
    exponent = 7
    for exp in range(7, -1, -1):
        if magnitude & (0x4000 >> (7 - exp)):
            exponent = exp
            break
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def audio(shape: list[tuple[str, float]]) -> bytes:
    """PCMU bytes for a list of ("tone"|"silence", seconds)."""
    out = bytearray()
    n = 0
    for kind, seconds in shape:
        for _ in range(round(seconds * RATE)):
            if kind == "tone":
                out.append(ulaw(round(AMPLITUDE * math.sin(2 * math.pi * 440 * n / RATE))))
            else:
                out.append(SILENCE)
            n += 1
    return bytes(out)


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def frame(payload: bytes, seq: int) -> bytes:
    """Ethernet + IPv4 + UDP around one RTP payload (addresses are placeholders:
    sipp keeps only the UDP payload and sends it to the peer's media address)."""
    udp = struct.pack("!HHHH", 6000, 6000, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), seq & 0xFFFF, 0, 64, 17, 0,
        bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]),
    )  # fmt: skip
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    ether = b"\x00" * 12 + b"\x08\x00"
    return ether + ip + udp


def pcap(pcmu: bytes, ssrc: int) -> bytes:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # DLT_EN10MB
    for i in range(0, len(pcmu) // SAMPLES):
        rtp = struct.pack("!BBHII", 0x80, 0x80 if i == 0 else 0, i, i * SAMPLES, ssrc)
        packet = frame(rtp + pcmu[i * SAMPLES : (i + 1) * SAMPLES], i)
        usec = i * PTIME_MS * 1000
        out += struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(packet), len(packet))
        out += packet
    return bytes(out)


SHAPES: dict[str, list[tuple[str, float]]] = {
    "machine.pcap": [("tone", 4.0), ("silence", 3.0)],
    "human.pcap": [("silence", 0.3), ("tone", 0.8), ("silence", 5.0)],
}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: make_pcap.py OUTDIR", file=sys.stderr)
        return 2
    outdir = Path(argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    for ssrc, (name, shape) in enumerate(SHAPES.items(), start=0x5EED):
        (outdir / name).write_bytes(pcap(audio(shape), ssrc))
        print(f"wrote {outdir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
