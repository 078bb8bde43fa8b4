"""Stopping by signal: the first SIGINT/SIGTERM asks for a graceful stop, a second one forces
the exit even when the graceful stop hangs."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from expwatch.cli_common import EXIT_INTERRUPTED

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

STUCK_SHUTDOWN = """
import anyio
from expwatch.cli_common import run_until_stopped

async def main():
    try:
        await anyio.wait_all_tasks_blocked()  # the signal receiver is listening
        print("ready", flush=True)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            print("stopping", flush=True)
            await anyio.sleep_forever()  # a graceful stop that never finishes

anyio.run(run_until_stopped, main)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_second_signal_forces_the_exit_when_the_graceful_stop_hangs(
    signum: signal.Signals,
) -> None:
    with anyio.fail_after(30):
        async with await anyio.open_process(
            [sys.executable, "-c", STUCK_SHUTDOWN], cwd=ROOT
        ) as process:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            assert await lines.receive_until(b"\n", 100) == b"ready"
            process.send_signal(signum)
            assert await lines.receive_until(b"\n", 100) == b"stopping"
            process.send_signal(signum)
            assert await process.wait() == EXIT_INTERRUPTED == 130
