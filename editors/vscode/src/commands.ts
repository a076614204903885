import * as vscode from 'vscode';
import { ExecuteCommandRequest, LanguageClient } from 'vscode-languageclient/node';
import { chooseFill, commandTarget } from './logic';

/** `{uri, range}` for the active editor's selection (the cursor when nothing is selected). */
function editorTarget(editor: vscode.TextEditor) {
  return commandTarget(editor.document.uri.toString(), editor.selection);
}

async function runOnServer(client: LanguageClient | undefined, command: string, target: object): Promise<void> {
  if (!client?.isRunning()) {
    const choice = await vscode.window.showWarningMessage('The Diffill server is not running.', 'Restart', 'Show Log');
    if (choice) {
      await vscode.commands.executeCommand(choice === 'Restart' ? 'diffill.restartServer' : 'diffill.showLog');
    }
    return;
  }
  try {
    // The server applies the edit itself (workspace/applyEdit) and reports problems with showMessage.
    await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [target] });
  } catch (err) {
    void vscode.window.showErrorMessage(`Diffill: ${command} failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * The server's own commands (diffill.fillGaps, diffill.bridge, diffill.continue, ...) are
 * registered in VS Code by the language client. Invoked from the palette or a key they have
 * no argument: this middleware supplies the active editor's `{uri, range}`.
 */
export function withEditorTarget(command: string, args: unknown[], next: (command: string, args: unknown[]) => vscode.ProviderResult<unknown>): vscode.ProviderResult<unknown> {
  const editor = vscode.window.activeTextEditor;
  if (args.length === 0 && editor) {
    args = [editorTarget(editor)];
  }
  return next(command, args);
}

/** diffill.fill, diffill.rewrite, diffill.restartServer and diffill.showLog. */
export function registerCommands(getClient: () => LanguageClient | undefined, restart: () => Promise<void>,
  output: vscode.OutputChannel): vscode.Disposable[] {
  const withEditor = (fn: (editor: vscode.TextEditor) => Promise<void>) => async () => {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showInformationMessage('Diffill: open a document first.');
      return;
    }
    await fn(editor);
  };
  return [
    vscode.commands.registerCommand('diffill.fill', withEditor(async (editor) => {
      const marker = vscode.workspace.getConfiguration('diffill', editor.document).get<string>('gapMarker');
      const choice = chooseFill(editor.document.getText(), editor.selection, marker);
      if (!choice) {
        void vscode.window.showInformationMessage('Diffill: select text to fill, or mark the gaps with [MASK] or ___.');
        return;
      }
      await runOnServer(getClient(), choice.command, commandTarget(editor.document.uri.toString(), choice.range));
    })),
    vscode.commands.registerCommand('diffill.rewrite', withEditor(async (editor) => {
      if (editor.selection.isEmpty) {
        void vscode.window.showInformationMessage('Diffill: select the text to rewrite.');
        return;
      }
      await runOnServer(getClient(), 'diffill.rewriteSelection', editorTarget(editor));
    })),
    vscode.commands.registerCommand('diffill.restartServer', restart),
    vscode.commands.registerCommand('diffill.showLog', () => output.show(true)),
  ];
}
