import * as os from 'os';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification, Executable, LanguageClient, LanguageClientOptions, State,
} from 'vscode-languageclient/node';
import { registerCommands, withEditorTarget } from './commands';
import { initializationOptions, plainInlineContext, resolveServerLaunch, serverSettings } from './logic';
import { StatusBar, StatusParams } from './status';

let client: LanguageClient | undefined;
let queue: Promise<void> = Promise.resolve();  // starts and stops, one at a time
let output: vscode.OutputChannel;
let status: StatusBar;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('Diffill');
  status = new StatusBar();
  context.subscriptions.push(output, status, ...registerCommands(() => client, restart, output),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('diffill.server')) {
        void restart();  // a new command or interpreter needs a new process
      }
    }));
  await serially(start);
}

export function deactivate(): Promise<void> {
  return serially(stop);
}

/** Run `job` after the previous start or stop (a client cannot be stopped while it starts). */
function serially(job: () => Promise<void>): Promise<void> {
  queue = queue.then(job, job);
  return queue;
}

function restart(): Promise<void> {
  return serially(async () => {
    await stop();
    await start();
  });
}

function createClient(): LanguageClient {
  const config = vscode.workspace.getConfiguration('diffill');
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const launch = resolveServerLaunch({
    command: config.get<string>('server.command'),
    args: config.get<string[]>('server.args'),
    pythonPath: config.get<string>('server.pythonPath'),
  }, os.homedir(), folder);
  const serverOptions: Executable = {
    command: launch.command, args: launch.args, options: { cwd: folder, env: { ...process.env, ...launch.env } },
  };
  const current = () => serverSettings((key) => vscode.workspace.getConfiguration('diffill').get(key));
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    initializationOptions: initializationOptions((key) => config.get(key)),
    synchronize: { configurationSection: 'diffill' },
    outputChannel: output,
    middleware: {
      executeCommand: withEditorTarget,
      // With the suggest widget open, vscode-languageclient 9.0.1 would send its selection's range in a
      // shape the server rejects; send plain positions instead.
      provideInlineCompletionItems: (document, position, context, token, next) =>
        next(document, position, plainInlineContext(context), token),
      workspace: {
        // The "diffill" section also holds client-only settings (server.*, trace.*): keep them here.
        configuration: async (params, token, next) => {
          const result = await next(params, token);
          return Array.isArray(result)
            ? result.map((value, i) => (params.items[i]?.section === 'diffill' ? current() : value))
            : result;
        },
        didChangeConfiguration: async () => {
          await client?.sendNotification(DidChangeConfigurationNotification.type, { settings: { diffill: current() } });
        },
      },
    },
  };
  const c = new LanguageClient('diffill', 'Diffill', serverOptions, clientOptions);
  c.registerProposedFeatures();  // textDocument/inlineCompletion (ghost text) in vscode-languageclient 9
  c.onNotification('diffill/status', (params: StatusParams) => {
    if (c === client) {
      status.update(params);
    }
  });
  c.onDidChangeState((e) => {
    if (c === client && e.newState === State.Stopped) {
      status.update({ state: 'stopped', message: 'the server is not running' });
    }
  });
  return c;
}

async function start(): Promise<void> {
  client = createClient();
  status.update({ state: 'loading', message: 'starting the server' });
  try {
    await client.start();
  } catch (err) {
    // The client has already reported the failure; point at the settings that fix it.
    output.appendLine(`Diffill: the server did not start (${err instanceof Error ? err.message : String(err)}). ` +
      'Set "diffill.server.command" to the diffill executable, or "diffill.server.pythonPath" to a Python ' +
      'interpreter that has Diffill installed, then run "Diffill: Restart Server".');
    status.update({ state: 'error', message: 'the server did not start; see the log' });
  }
}

async function stop(): Promise<void> {
  const old = client;
  client = undefined;
  try {
    await old?.stop();
  } catch {
    // A client whose start failed cannot be stopped; it is dropped all the same.
  }
}
