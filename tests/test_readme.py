"""The README's MCP client setup, run as written: the Claude Desktop entry starts a server
that answers a real stdio client, and every tool, resource and prompt it offers is named in
the README."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def client_setup_section() -> str:
    start = README.index("## Connecting an MCP client")
    return README[start : README.index("\n## ", start + 1)]


def desktop_entry() -> dict[str, object]:
    [block] = re.findall(r"```json\n(.*?)```", client_setup_section(), flags=re.DOTALL)
    entry: dict[str, object] = json.loads(block)["mcpServers"]["expwatch"]
    return entry


@pytest.mark.anyio
async def test_the_claude_desktop_entry_starts_a_server_a_client_can_use(tmp_path: Path) -> None:
    entry = desktop_entry()
    command, args = entry["command"], entry["args"]
    assert isinstance(command, str) and isinstance(args, list)
    # The placeholders, replaced by this checkout's paths, as a user would.
    assert command == "/path/to/expwatch/.venv/bin/expwatch"
    installed = Path(sys.executable).parent / "expwatch"
    if not installed.exists():
        pytest.skip(f"the expwatch console script is not installed beside {sys.executable}")
    config = tmp_path / "expwatch.toml"
    config.write_text('[store]\npath = "readme.db"\n')
    args = [str(config) if a == "/path/to/expwatch.toml" else a for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPWATCH_")}
    server = StdioServerParameters(command=str(installed), args=args, env=env, cwd=str(tmp_path))
    with anyio.fail_after(30):
        async with Client(server) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            resources = {r.uri for r in (await client.list_resources()).resources}
            templates = {
                t.uri_template for t in (await client.list_resource_templates()).resource_templates
            }
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            index = await client.read_resource("experiments://index")
    assert index.contents and (tmp_path / "readme.db").exists()
    section = client_setup_section()
    for name in sorted(tools | prompts):
        assert f"`{name}`" in section, f"README does not mention {name}"
    for uri in sorted(resources | templates):
        shown = uri.replace("{experiment_id}", "{id}").replace("{metric}", "{metric_id}")
        assert f"`{shown}`" in section, f"README does not mention {uri}"
