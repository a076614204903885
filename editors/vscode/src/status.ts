import * as vscode from 'vscode';
import { statusView } from './logic';

/** The `diffill/status` notification's params (server/features/status.py). */
export interface StatusParams { state: string; message?: string }

/** A status bar item showing the server's state; clicking it opens the server log. */
export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('diffill.status', vscode.StatusBarAlignment.Right, 100);

  constructor() {
    this.item.name = 'Diffill';
    this.item.command = 'diffill.showLog';
    this.update({ state: 'loading', message: 'starting the server' });
    this.item.show();
  }

  update(params: StatusParams): void {
    const view = statusView(params.state, params.message);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = view.error ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
