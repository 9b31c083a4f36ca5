import type { Command } from 'commander';
import { VERSION } from '@monocore/engine/version';
import { clientFor, withApiOption, type ApiCommandOptions } from '../api/command-options.js';
import { DEFAULT_RUN_CODE_IMAGES } from '../mcp/run-code-plan.js';

interface McpOptions extends ApiCommandOptions {
  pythonImage: string;
  nodeImage: string;
  shImage: string;
}

export function registerMcp(program: Command): void {
  withApiOption(
    program
      .command('mcp')
      .description('Serve monocore sandboxes to AI agents as MCP tools over stdio (create, run commands and code, files, destroy)')
      .option('--python-image <ref>', 'image of fresh sandboxes for run_code in python', DEFAULT_RUN_CODE_IMAGES.python)
      .option('--node-image <ref>', 'image of fresh sandboxes for run_code in node', DEFAULT_RUN_CODE_IMAGES.node)
      .option('--sh-image <ref>', 'image of fresh sandboxes for run_code in sh', DEFAULT_RUN_CODE_IMAGES.sh)
      .addHelpText(
        'after',
        '\nAn MCP client starts it and speaks JSON-RPC on its stdin/stdout; nothing else is written to stdout.\n' +
          'Tools: create_sandbox, run_command, run_code, write_file, read_file, list_sandboxes, destroy_sandbox.\n' +
          'It talks to the API like every command (--api, MONOCORE_API_URL, MONOCORE_API_TOKEN; else the local\n' +
          'daemon, started when nothing answers). Configuration for an MCP client: see the README ("MCP server").',
      ),
  ).action(async (opts: McpOptions) => {
    // Loaded here: the MCP SDK is needed by this command only.
    const [{ StdioServerTransport }, { createMonocoreMcpServer }] = await Promise.all([
      import('@modelcontextprotocol/sdk/server/stdio.js'),
      import('../mcp/monocore-mcp-server.js'),
    ]);
    const client = clientFor(opts);
    const server = createMonocoreMcpServer(client, {
      version: VERSION,
      images: { python: opts.pythonImage, node: opts.nodeImage, sh: opts.shImage },
    });
    const transport = new StdioServerTransport();
    const closed = new Promise<void>((resolve) => {
      transport.onclose = () => resolve();
      // The client closes our stdin to end the session.
      process.stdin.once('end', () => resolve());
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await server.connect(transport);
    await closed;
    await server.close();
    await client.close();
  });
}
