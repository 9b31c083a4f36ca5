import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { CreateSandboxRequestSchema } from '@monocore/api-schemas';
import { MonocoreClient } from '@monocore/client';
import { createMonocoreMcpServer, createSandboxRequest } from './monocore-mcp-server.js';

test('create_sandbox: allow becomes the API\'s { outbound, allow } form; without allow network passes as it is', () => {
  const allow = ['pypi.org', '*.pythonhosted.org'];
  assert.deepEqual(createSandboxRequest({ image: 'python:3.12', network: 'outbound', allow }), { image: 'python:3.12', network: { outbound: true, allow } });
  // allow without network "outbound" is sent as outbound: false, which the API refuses naming network.allow (its rule, one home).
  assert.deepEqual(createSandboxRequest({ image: 'x', allow }), { image: 'x', network: { outbound: false, allow } });
  assert.deepEqual(createSandboxRequest({ image: 'x', network: 'none' }), { image: 'x', network: 'none' });
  assert.deepEqual(createSandboxRequest({ image: 'x', ram: 256 }), { image: 'x', ram: 256 });
  for (const args of [{ image: 'x', network: 'outbound', allow } as const, { image: 'x', allow }]) {
    assert.equal(CreateSandboxRequestSchema.safeParse(createSandboxRequest(args)).success, true, 'the API takes its shape');
  }
});

test('create_sandbox lists allow (a list of strings) beside network in its input schema', async () => {
  const api = new MonocoreClient({ url: 'http://127.0.0.1:9', token: 'unused', localToken: false });
  const server = createMonocoreMcpServer(api, { version: 'test', images: { python: 'python', node: 'node', sh: 'busybox' } });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const mcp = new Client({ name: 'monocore-unit', version: '1.0.0' });
  try {
    await server.connect(serverSide);
    await mcp.connect(clientSide);
    const { tools } = await mcp.listTools();
    const props = tools.find((t) => t.name === 'create_sandbox')!.inputSchema.properties as Record<string, { type?: string; enum?: string[]; items?: { type?: string } }>;
    assert.equal(props.allow?.type, 'array');
    assert.equal(props.allow?.items?.type, 'string');
    assert.deepEqual(props.network?.enum, ['none', 'outbound']);
  } finally {
    await mcp.close();
    await server.close();
    await api.close();
  }
});
