// An independent MCP client on the official TypeScript SDK, driven by
// tests/mcp_server/test_typescript_client.py.
//
//   node client.mjs --experiment <id> [--timeout-seconds 20] -- <server command> [args...]
//
// Spawns the server over stdio, then: lists tools, resources and resource templates; calls
// get_experiment_results; reads experiments://<id>/results; subscribes to it and prints
// {"step":"subscribed"}; waits for notifications/resources/updated on that URI; re-reads it
// and prints one {"step":"result", ...} line with everything it saw. The server inherits this
// process's environment and working directory. Any failure, or any wait longer than the
// timeout, prints a message to stderr and exits 1.

import { parseArgs } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const { values: options, positionals: command } = parseArgs({
  options: {
    experiment: { type: 'string' },
    'timeout-seconds': { type: 'string', default: '20' },
  },
  allowPositionals: true,
});
if (!options.experiment || command.length === 0) {
  fail('usage: node client.mjs --experiment <id> [--timeout-seconds 20] -- <command> [args...]');
}
const timeoutMs = Number(options['timeout-seconds']) * 1000;
if (!(timeoutMs > 0)) fail(`--timeout-seconds must be a positive number, not ${options['timeout-seconds']}`);
const requestOptions = { timeout: timeoutMs };
const uri = `experiments://${options.experiment}/results`;

function fail(message) {
  process.stderr.write(`ts-client: ${message}\n`);
  process.exit(1);
}

function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

/** `promise`, or a rejection naming `what` once the timeout has passed. */
function bounded(promise, what) {
  let timer;
  const expiry = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)),
      timeoutMs,
    );
  });
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

/** Every page of a paginated list request. */
async function listAll(list, key) {
  const items = [];
  let cursor;
  do {
    const page = await list(cursor === undefined ? undefined : { cursor }, requestOptions);
    items.push(...page[key]);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return items;
}

function textOf(contents, what) {
  const texts = contents.filter((c) => typeof c.text === 'string').map((c) => c.text);
  if (texts.length !== 1) throw new Error(`${what}: expected one text content, got ${JSON.stringify(contents)}`);
  return texts[0];
}

/** The stdio transport, remembering the protocol version the client negotiated (the SDK
 * hands it to transports that accept it, as the HTTP transports do). */
class RecordingStdioTransport extends StdioClientTransport {
  setProtocolVersion(version) {
    this.protocolVersion = version;
  }
}

async function main() {
  const transport = new RecordingStdioTransport({
    command: command[0],
    args: command.slice(1),
    env: Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== undefined)),
    cwd: process.cwd(),
    stderr: 'inherit',
  });
  const client = new Client({ name: 'expwatch-ts-client', version: '0.0.0' });
  const errors = [];
  const otherNotifications = [];
  client.onerror = (error) => errors.push(String(error));
  client.fallbackNotificationHandler = async (notification) => {
    otherNotifications.push(notification.method);
  };

  const updates = [];
  let updated;
  const firstUpdate = new Promise((resolve) => {
    updated = resolve;
  });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, async (notification) => {
    updates.push(notification.params.uri);
    if (notification.params.uri === uri) updated(notification.params.uri);
  });

  try {
    await bounded(client.connect(transport, requestOptions), 'the initialize handshake');
    const capabilities = client.getServerCapabilities() ?? {};
    const tools = await listAll((p, o) => client.listTools(p, o), 'tools');
    const resources = await listAll((p, o) => client.listResources(p, o), 'resources');
    const templates = await listAll(
      (p, o) => client.listResourceTemplates(p, o),
      'resourceTemplates',
    );
    const toolResult = await client.callTool(
      { name: 'get_experiment_results', arguments: { experiment_id: options.experiment } },
      undefined,
      requestOptions,
    );
    if (toolResult.isError) throw new Error(`get_experiment_results failed: ${JSON.stringify(toolResult.content)}`);
    const firstRead = await client.readResource({ uri }, requestOptions);

    await client.subscribeResource({ uri }, requestOptions);
    emit({ step: 'subscribed', uri });
    const updateUri = await bounded(firstUpdate, `notifications/resources/updated for ${uri}`);
    const reread = await client.readResource({ uri }, requestOptions);

    emit({
      step: 'result',
      protocol_version: transport.protocolVersion ?? null,
      server: client.getServerVersion() ?? null,
      capabilities,
      tools: tools.map((t) => t.name),
      resources: resources.map((r) => r.uri),
      resource_templates: templates.map((t) => t.uriTemplate),
      tool_result: textOf(toolResult.content, 'get_experiment_results'),
      tool_structured: toolResult.structuredContent ?? null,
      first_read: textOf(firstRead.contents, `first read of ${uri}`),
      update_uri: updateUri,
      updates,
      reread: textOf(reread.contents, `re-read of ${uri}`),
      other_notifications: otherNotifications,
      errors,
    });
  } catch (error) {
    // The failure is the news: stopping the server after it is best effort.
    await bounded(client.close(), 'the server to stop').catch(() => {});
    throw error;
  }
  await bounded(client.close(), 'the server to stop');
}

const watchdog = setTimeout(() => fail(`gave up after ${(6 * timeoutMs) / 1000} s in all`), 6 * timeoutMs);
watchdog.unref();
main().then(
  () => process.exit(0),
  (error) => fail(error?.stack ?? String(error)),
);
