"""Cross-check against an SMPP implementation nobody here wrote: Kannel's SMSC emulator.

``test_smsc`` (Debian ``kannel-extras``, installed by ``scripts/install-kannel.sh``) is
the SMSC side of Kannel's own benchmark (``-m n_messages -r N``): it listens for SMPP on
port 2345 (and HTTP on 8080), takes ``bind_transmitter`` and ``bind_receiver`` (not
``bind_transceiver``), starts once a receiver is bound, sends N mobile-originated
``deliver_sm`` (esm_class 0) and exits after it has decoded N ``submit_sm``. It answers
every ``submit_sm`` with status 0 and an empty ``message_id``, and sends no delivery
receipts, so the receipt half of the cross-check cannot be made against it (the
simulator tests cover receipts).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from smsrelay.errors import UnconfirmedSend
from smsrelay.providers import build
from smsrelay.providers.smpp import SmppProvider, SmppSettings
from tests.conftest import eventually
from tests.providers.contract import message
from tests.providers.smpp_helpers import RecordingSink

ROOT = Path(__file__).resolve().parents[2]
TEST_SMSC = Path("/usr/lib/kannel/test/test_smsc")
PORTS = (2345, 8080)  # fixed in test_smsc.c
N = 25


@pytest.fixture
def test_smsc() -> Iterator[Path]:
    """Kannel's emulator binary, installed on demand; skips when that is impossible."""
    if not TEST_SMSC.exists():
        if shutil.which("apt-get") is None:
            pytest.skip("kannel-extras cannot be installed: no apt-get on this machine")
        done = subprocess.run([ROOT / "scripts/install-kannel.sh"], capture_output=True)
        if done.returncode != 0 or not TEST_SMSC.exists():
            pytest.skip(f"kannel-extras could not be installed: {done.stderr.decode()[-300:]}")
    busy = [port for port in PORTS if _listening(port)]
    if busy:
        pytest.skip(f"test_smsc needs ports {PORTS}; in use: {busy}")
    yield TEST_SMSC


async def test_binds_submits_and_acks_against_kannels_emulator(
    test_smsc: Path, tmp_path: Path
) -> None:
    """Kannel decodes our binds, N submit_sm and N deliver_sm_resp; its id-less answers are
    UnconfirmedSend."""
    log = tmp_path / "test_smsc.log"
    proc = _start(test_smsc, log)
    provider = None
    try:
        await eventually(lambda: _listening(2345), seconds=20)
        settings = SmppSettings(
            host="127.0.0.1",
            port=2345,
            system_id="smsrelay",
            password=SecretStr("x"),
            bind_mode="transmitter_receiver",
            sender="Relay",
            timeout=5.0,
        )
        provider = build("smpp", settings)
        assert isinstance(provider, SmppProvider)
        await provider.start(RecordingSink())
        # test_smsc discards (never answers) submits made before its receiver is bound.
        await eventually(lambda: all(s.up for b in provider.binds for s in b.sessions))
        errors = []
        for i in range(N):
            with pytest.raises(UnconfirmedSend) as caught:
                await provider.send(message(id=f"k-{i}", body=f"kannel {i} {{€}}"))
            errors.append(caught.value.code)
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        if provider is not None:
            await provider.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert code == 0, text[-2000:]
    assert errors == ["no-message-id"] * N
    assert text.count("type submit,") == N, "Kannel did not decode every submit_sm"
    # It keeps at most 10 deliver_sm unanswered; it may exit before the last acks are read.
    assert text.count("type deliver_ack,") > 10, "Kannel did not get our deliver_sm_resp"


def _start(binary: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(binary), "-m", "n_messages", "-r", str(N)], stdout=out, stderr=out
        )


def _listening(port: int) -> bool:
    # Read from /proc, not by connecting: test_smsc counts a probe as one of its two clients.
    wanted = f":{port:04X} "
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if (fields[1] + " ").endswith(wanted) and fields[3] == "0A":
                    return True
    return False
