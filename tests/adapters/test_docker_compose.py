"""docker/compose.yaml against the repository: files, ports, credentials, far-end table.

Docker cannot run here, so these checks keep the compose setup honest by reading it:
every file it mounts or copies exists, Asterisk reads the project's own files (the same
ones the tests and docs use), and the ports, names and secrets on both sides agree.
"""

from __future__ import annotations

import re
import struct
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from ami_listener.config import Settings, split_listen
from ami_listener.sim_scenarios import BY_LAST_DIGITS, FAR_ENDS, default_behaviour

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
SECRET_ENV = "AUTORETRY_AMI_SECRET"


def asterisk_conf(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of an Asterisk .conf file as (key, value) lists (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = sections.setdefault("", [])
    for raw in path.read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if m := re.fullmatch(r"\[([^\]]+)\](\(.*\))?", line):
            # Sections may repeat with different types (PJSIP): merge them.
            current = sections.setdefault(m.group(1), [])
            continue
        parts = re.split(r"\s*(=>|=)\s*", line, maxsplit=1)
        assert len(parts) == 3, f"{path.name}: cannot parse {raw!r}"
        current.append((parts[0], parts[2]))
    return sections


def one(section: list[tuple[str, str]], key: str) -> str:
    values = [v for k, v in section if k == key]
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svc = compose["services"]
    assert set(svc) == {"asterisk", "autoretry", "sipp"}
    return svc


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path resolved against docker/, container path) of every bind mount."""
    mounts = []
    for entry in service.get("volumes", []):
        source, target, *_ = entry.split(":")
        if source.startswith((".", "/")):
            mounts.append(((DOCKER / source).resolve(), target))
    return mounts


def dockerfile_copies(dockerfile: Path, context: Path) -> list[Path]:
    """Sources of every COPY from the build context (not --from=stage)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    sources = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources += [context / s for s in args[:-1]]
    return sources


def test_every_mounted_or_copied_file_exists(services: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for name, service in services.items():
        for source, target in bind_mounts(service):
            assert source.is_file(), f"{name}: mounts missing {source} at {target}"
            assert ROOT in source.parents, f"{name}: mounts {source} from outside the repo"
            checked += 1
        build = service["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT, f"{name}: build context {context}"
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: no {dockerfile}"
        for source in dockerfile_copies(dockerfile, context):
            assert source.exists(), f"{name}: {dockerfile.name} copies missing {source}"
            checked += 1
        ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
        assert ignore.is_file(), f"{name}: no {ignore.name} (the context is the whole repo)"
    assert checked >= 20


def test_asterisk_reads_the_projects_own_files(services: dict[str, dict[str, Any]]) -> None:
    mounted = {source.relative_to(ROOT).as_posix(): target for source, target in
               bind_mounts(services["asterisk"])}  # fmt: skip
    expected = {
        "asterisk-conf/manager.conf": "/etc/asterisk/manager.conf",
        "asterisk-conf/amd.conf": "/etc/asterisk/amd.conf",
        "asterisk-conf/pjsip_autoretry.conf": "/etc/asterisk/pjsip_autoretry.conf",
        "dialplan/extensions_autoretry.conf": "/etc/asterisk/extensions_autoretry.conf",
    }
    agi = ROOT / "agi"
    scripts = sorted(agi.glob("autoretry-*.py"))
    assert scripts
    agidir = "/var/lib/asterisk/agi-bin"
    expected |= {f"agi/{s.name}": f"{agidir}/{s.name}" for s in scripts}
    assert mounted == expected
    dockerfile = (DOCKER / "asterisk" / "Dockerfile").read_text()
    assert f"astagidir => {agidir}" in dockerfile  # the scripts are where Asterisk looks
    # The AGI scripts run "python3" from PATH: the image puts the package's venv first.
    assert all(s.read_text().startswith("#!/usr/bin/env python3\n") for s in scripts)
    assert "ENV PATH=/opt/autoretry/bin:$PATH" in dockerfile
    # The docker-only glue includes those files instead of changing them.
    assert "#include pjsip_autoretry.conf" in (DOCKER / "asterisk/pjsip.conf").read_text()
    ext = (DOCKER / "asterisk/extensions.conf").read_text()
    assert '#include "extensions_autoretry.conf"' in ext


def test_ami_port_user_and_secret_agree(services: dict[str, dict[str, Any]]) -> None:
    manager = asterisk_conf(ROOT / "asterisk-conf/manager.conf")
    toml = tomllib.loads((DOCKER / "autoretry/autoretry.toml").read_text())
    assert int(one(manager["general"], "port")) == toml["ami"]["port"]
    assert toml["ami"]["username"] in manager
    assert toml["ami"].get("use_filters") is False  # the user has no "system" write
    daemon = services["autoretry"]
    secret = daemon["environment"][SECRET_ENV]
    assert secret == one(manager[toml["ami"]["username"]], "secret")
    assert "secret" not in toml["ami"]  # one source of truth: the environment
    # manager.conf binds and permits loopback only: the daemon must be on Asterisk's host.
    assert one(manager["general"], "bindaddr") == "127.0.0.1"
    assert one(manager[toml["ami"]["username"]], "permit").startswith("127.0.0.1/")
    assert toml["ami"]["host"] == "127.0.0.1"
    assert daemon["network_mode"] == "service:asterisk"


def test_api_listens_inside_and_is_published_on_loopback_only(
    services: dict[str, dict[str, Any]],
) -> None:
    toml = tomllib.loads((DOCKER / "autoretry/autoretry.toml").read_text())
    host, port = split_listen(toml["api"]["listen"])
    assert host == "0.0.0.0"
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published == [f"127.0.0.1:{port}:{port}"]
    assert "ports" not in services["autoretry"]  # network_mode service: ports go on asterisk
    token = services["autoretry"]["environment"]["AUTORETRY_API_TOKEN"]
    assert token.startswith("${AUTORETRY_API_TOKEN:-")
    docs = (DOCKER / "README.md").read_text()
    default = token.removeprefix("${AUTORETRY_API_TOKEN:-").removesuffix("}")
    assert f"Authorization: Bearer {default}" in docs
    assert f"http://127.0.0.1:{port}/call" in docs


def test_trunk_points_at_the_sipp_container(services: dict[str, dict[str, Any]]) -> None:
    pjsip = asterisk_conf(ROOT / "asterisk-conf/pjsip_autoretry.conf")
    contact = one(pjsip["carrier"], "contact")
    m = re.fullmatch(r"sip:([^:;]+):(\d+)", contact)
    assert m, contact
    aliases = services["sipp"]["networks"]["default"]["aliases"]
    assert m.group(1) in aliases
    run = (DOCKER / "sipp/run-sipp.sh").read_text()
    assert f"-p {m.group(2)} " in run
    assert one(pjsip["transport-udp"], "bind").endswith(":5060")
    toml = tomllib.loads((DOCKER / "autoretry/autoretry.toml").read_text())
    assert toml["dialer"]["channel"] == "PJSIP/{number}@carrier"


def test_targets_exist_in_the_dialplan() -> None:
    toml = tomllib.loads((DOCKER / "autoretry/autoretry.toml").read_text())
    dialplan = (ROOT / "dialplan/extensions_autoretry.conf").read_text()
    for target in toml["targets"].values():
        assert f"[{target['context']}]" in dialplan
        assert re.search(rf"^exten => {re.escape(target['extension'])},1,", dialplan, re.M)


def test_docker_config_loads(tmp_path: Path) -> None:
    env = {SECRET_ENV: "s", "AUTORETRY_API_TOKEN": "t"}
    settings = Settings.load(DOCKER / "autoretry/autoretry.toml", env)
    assert str(settings.database.path) == "/var/lib/autoretry/autoretry.db"
    assert settings.retry.jitter_s == 0  # the documented curl shows retries 30 s apart
    assert "example" in settings.targets


SCENARIO = DOCKER / "sipp/carrier.xml"


def scenario_branches() -> dict[str, int]:
    """Last three digits -> SIP status sipp answers with, read from carrier.xml."""
    root = ET.parse(SCENARIO).getroot()
    elements = list(root)
    digits = {}
    for ereg in root.iter("ereg"):
        if m := re.fullmatch(r"\^INVITE sip:\[\^@ ;\]\*(\d{3})@", ereg.get("regexp", "")):
            digits[ereg.get("assign_to", "")] = m.group(1)
    branches: dict[str, int] = {}
    for i, el in enumerate(elements):
        if el.tag != "label" or el.get("id") not in digits:
            continue
        codes = []
        for e in elements[i + 1 :]:
            if e.tag == "label":
                break
            if e.tag == "send":
                codes.append(int((e.text or "").split()[1]))
        # The INVITE's final answer is the branch's last one (a 200 before a 487 is the
        # CANCEL's; a 180 before a 200 is ringing).
        status = codes[-1]
        branches[digits[el.get("id", "")]] = status
    return branches


def test_far_end_table_matches_the_simulator() -> None:
    branches = scenario_branches()
    assert set(branches) == {"486", "408", "404", "503", "603", "480", "666"}
    for digits, status in branches.items():
        behaviour = BY_LAST_DIGITS[digits]
        assert default_behaviour(f"+1202555{digits}") is behaviour
        expected = FAR_ENDS[behaviour].sip_code
        if FAR_ENDS[behaviour].kind == "ring":
            expected = 487  # rings until CANCEL, then 487 Request Terminated
        assert status == expected, f"{digits}: sipp {status}, simulator {expected}"
    # The 480 carries the Q.850 cause the simulator reports for it.
    assert "Reason: Q.850;cause=20" in SCENARIO.read_text()


def test_greetings_have_the_lengths_amd_needs(tmp_path: Path) -> None:
    sys.path.insert(0, str(DOCKER / "sipp"))
    try:
        import make_pcap
    finally:
        sys.path.remove(str(DOCKER / "sipp"))
    assert make_pcap.main(["make_pcap.py", str(tmp_path)]) == 0
    for name, tone_s in (("machine.pcap", 4.0), ("human.pcap", 0.8)):
        data = (tmp_path / name).read_bytes()
        assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4
        offset, loud, packets = 24, 0, 0
        while offset < len(data):
            length = struct.unpack("<I", data[offset + 8 : offset + 12])[0]
            rtp = data[offset + 16 + 14 + 20 + 8 : offset + 16 + length]
            assert rtp[0] == 0x80 and rtp[1] & 0x7F == 0  # RTP v2, PCMU
            loud += sum(b not in (0xFF, 0x7F) for b in rtp[12:])  # 0 and -0
            packets += 1
            offset += 16 + length
        assert abs(loud / 8000 - tone_s) < 0.06, name  # zero crossings are "silent"
        assert packets * 0.02 > tone_s + 2.5  # silence after it, for AMD to decide
    # machine > greeting (1500 ms in amd.conf) > human: MACHINE / HUMAN.
    amd = (ROOT / "asterisk-conf/amd.conf").read_text()
    assert re.search(r"^;greeting = 1500\b", amd, re.M)
