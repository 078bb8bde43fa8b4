"""A recorded terminal session of `expwatch demo`: the demo runs in a real terminal (a tmux
pane on a tmux server of the test's own), and the screen it draws is read back as a user
would see it. `docs/record_demo.sh` records the same way into `docs/demo-session.txt`."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        shutil.which("tmux") is None,
        reason="tmux is not installed (Debian/Ubuntu: apt-get install tmux); "
        "the recorded demo session needs a real terminal",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 160, 50
SESSION = "demo"
POLL_SECONDS = 0.1
"""How often the screen is read while waiting for it to show something."""


class Pane:
    """One tmux pane on a private tmux server (its own socket: the user's tmux is never
    touched)."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    async def tmux(self, *args: str) -> str:
        result = await anyio.run_process(["tmux", "-S", str(self.socket), *args], check=True)
        return result.stdout.decode()

    async def screen(self, *, colours: bool = False) -> str:
        """What the pane shows now, line by line (with its colours as escape codes)."""
        return await self.tmux("capture-pane", "-p", *(["-e"] if colours else []), "-t", SESSION)

    async def wait_for(self, is_done: Callable[[str], bool], *, timeout_seconds: float) -> str:
        """Read the screen until `is_done(screen)` holds; the screen then. Fails showing the
        last screen read if it does not come to hold within `timeout_seconds`."""
        screen = ""
        with anyio.move_on_after(timeout_seconds):
            while True:
                screen = await self.screen()
                if is_done(screen):
                    return screen
                await anyio.sleep(POLL_SECONDS)  # the next look at the screen, not a sync
        raise AssertionError(f"not shown within {timeout_seconds:g} s; the screen:\n{screen}")


@asynccontextmanager
async def demo_in_tmux(tmp_path: Path, *args: str) -> AsyncIterator[Pane]:
    """`expwatch demo ARGS` in a detached WIDTH×HEIGHT tmux pane that stays on screen after
    the demo exits."""
    pane = Pane(tmp_path / "tmux.sock")
    command = " ".join([sys.executable, "-m", "expwatch", "demo", *args])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPWATCH_", "TMUX"))}
    env["TERM"] = "xterm-256color"
    await anyio.run_process(
        [
            "tmux",
            "-S",
            str(pane.socket),
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            str(WIDTH),
            "-y",
            str(HEIGHT),
            "-c",
            str(ROOT),
            command,
            ";",
            "set-option",
            "-t",
            SESSION,
            "remain-on-exit",
            "on",
        ],
        env=env,
        check=True,
    )
    try:
        yield pane
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.run_process(["tmux", "-S", str(pane.socket), "kill-server"], check=False)


def line_with(screen: str, text: str) -> str:
    return next((line for line in screen.splitlines() if text in line), "")


def tells_every_story(screen: str) -> bool:
    """The experiments table shows each story's outcome and the last alert arrived."""
    return (
        " won " in line_with(screen, "Checkout redesign")
        and "regressed" in line_with(screen, "Paid upgrade (guardrail)")
        and "MISMATCH" in line_with(screen, "Onboarding checklist")
        and "stopped" in line_with(screen, "Search ranking v2")
        and "decision_made" in line_with(screen, "Recommendations carousel")
        and "[info] Recommendations carousel: decision recorded: launched" in screen
    )


async def test_the_demo_in_a_terminal_shows_its_stories_live_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    """In a real 160×50 terminal the demo draws its live view: the header with the MCP
    endpoint and database, every experiment of both platforms with our verdict and the
    platform's (a win, an SRM, a regressed guardrail, a stop, a decision), the sources'
    health, the latest events and the latest alerts the terminal received (coloured by
    urgency), all within the screen; Ctrl-C leaves the last frame on screen and says the demo
    stopped."""
    args = ["--port", "0", "--refresh-seconds", "0.4", "--dir", str(tmp_path / "demo")]
    async with demo_in_tmux(tmp_path, *args) as pane:
        screen = await pane.wait_for(tells_every_story, timeout_seconds=40)
        coloured = await pane.screen(colours=True)
        await pane.tmux("send-keys", "-t", SESSION, "C-c")
        final = await pane.wait_for(lambda s: "demo stopped." in s, timeout_seconds=10)
    (tmp_path / "screen.txt").write_text(screen)  # for a look when this fails
    lines = screen.splitlines()
    assert len(lines) <= HEIGHT and max(len(line) for line in lines) <= WIDTH
    assert any(line.startswith("╭─ expwatch demo ─") for line in lines)
    assert [line for line in lines if line.strip()][-1].startswith("╰")  # the bottom fits
    assert "MCP       http://127.0.0.1:" in screen and "/mcp" in line_with(screen, "MCP ")
    assert str(tmp_path / "demo" / "expwatch-demo.db") in screen
    for platform, name, experiment in (
        ("GrowthBook", "Checkout redesign", "exp_checkout_redesign"),
        ("GrowthBook", "Pricing page layout", "exp_pricing_page"),
        ("GrowthBook", "Search ranking v2", "exp_search_ranking"),
        ("Statsig", "Free trial banner", "free_trial_banner"),
        ("Statsig", "Onboarding checklist", "onboarding_checklist"),
        ("Statsig", "Recommendations carousel", "recommendations_carousel"),
    ):
        assert line_with(screen, name).lstrip().startswith(platform), name
        assert experiment in screen, experiment
    assert "inconclusive" in line_with(screen, "Free trial banner")  # the flat one
    assert "launched: Carousel" in screen
    for source in ("growthbook-demo", "statsig-demo"):
        health = line_with(screen, source)
        assert "closed" in health and "none" in health, health
    assert "─ Events (newest last) ─" in screen
    assert "decision_made            Recommendations carousel" in screen
    assert "─ Alerts sent to the terminal ─" in screen
    # Coloured by urgency: an SRM in red, a win in green.
    red, green = "\x1b[31m", "\x1b[32m"
    assert red in line_with(coloured, "MISMATCH")
    assert green in line_with(coloured, "Checkout redesign: Conversion is now won")
    # Ctrl-C: the last frame stays, the demo says it stopped.
    assert "Recommendations carousel" in final and "demo stopped." in final
