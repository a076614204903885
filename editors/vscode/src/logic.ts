// The client's own decisions, kept free of `vscode` so that plain Node can test them.

/** LSP position and range (zero-based lines, UTF-16 characters), as the server expects them. */
export interface Position { line: number; character: number }
export interface Range { start: Position; end: Position }

/** Settings the server understands (server/config.py); `server.*` and `trace.*` stay in the client. */
export const SERVER_SETTINGS = [
  'model', 'steps', 'trigger', 'enabledLanguages', 'disabledLanguages',
  'maxTokens', 'candidates', 'threshold', 'gapMarker', 'precision', 'proofreadMargin',
  // Not contributed, but passed on when a user writes them into settings.json.
  'contextChars', 'maxDocumentChars', 'threads', 'contextTokens',
] as const;

/** The `diffill` settings as the server wants them: `get` reads one key of the section. */
export function serverSettings(get: (key: string) => unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of SERVER_SETTINGS) {
    const value = get(key);
    if (value !== undefined && value !== null) {
      out[key] = value;
    }
  }
  return out;
}

/** `initializationOptions` for `initialize`: the settings under a "diffill" key. */
export function initializationOptions(get: (key: string) => unknown): { diffill: Record<string, unknown> } {
  return { diffill: serverSettings(get) };
}

export interface LaunchSettings { command?: string; args?: string[]; pythonPath?: string }
export interface Launch { command: string; args: string[]; env: Record<string, string> }

/** Expand a leading `~` and `${workspaceFolder}` in a path-like setting. */
export function expandPath(value: string, home: string, workspaceFolder?: string): string {
  let v = value.trim();
  if (v === '~' || v.startsWith('~/') || v.startsWith('~\\')) {
    v = home + v.slice(1);
  }
  if (workspaceFolder !== undefined) {
    v = v.split('${workspaceFolder}').join(workspaceFolder);
  }
  return v;
}

/**
 * How to start the server: `<pythonPath> -m server` when a Python interpreter is set,
 * otherwise `<command> serve` (default `diffill`); `args` are appended either way.
 */
export function resolveServerLaunch(s: LaunchSettings, home: string, workspaceFolder?: string): Launch {
  const extra = (s.args ?? []).filter((a) => typeof a === 'string');
  const python = (s.pythonPath ?? '').trim();
  if (python) {
    // PYTHONSAFEPATH (3.11+): a `server.py` in the working directory must not shadow the package.
    return { command: expandPath(python, home, workspaceFolder), args: ['-m', 'server', ...extra],
      env: { PYTHONSAFEPATH: '1' } };
  }
  const command = (s.command ?? '').trim() || 'diffill';
  return { command: expandPath(command, home, workspaceFolder), args: ['serve', ...extra], env: {} };
}

export const DEFAULT_GAP_MARKER = '\\[MASK\\]|_{3,}';

/**
 * Whether `text` contains a gap marker. The marker is a Python regex; when JavaScript
 * cannot compile it the answer is "maybe" (true) and the server decides.
 */
export function hasGapMarkers(text: string, marker: string | undefined): boolean {
  let rx: RegExp;
  try {
    rx = new RegExp(marker || DEFAULT_GAP_MARKER);
  } catch {
    return true;
  }
  return rx.test(text);
}

export function isEmpty(r: Range): boolean {
  return r.start.line === r.end.line && r.start.character === r.end.character;
}

export type FillCommand = 'diffill.fillGaps' | 'diffill.fillSelection';

/**
 * `diffill.fill`: fill the document's gap markers when nothing is selected, else fill
 * the selection. Undefined when there is neither a selection nor a marker.
 */
export function chooseFill(text: string, selection: Range, marker?: string): { command: FillCommand; range: Range } | undefined {
  if (!isEmpty(selection)) {
    return { command: 'diffill.fillSelection', range: selection };
  }
  if (hasGapMarkers(text, marker)) {
    // An empty range asks the server for every gap in the document.
    return { command: 'diffill.fillGaps', range: selection };
  }
  return undefined;
}

/** A range as a plain LSP object (a `vscode.Range` would serialise as `[start, end]`). */
export function plainRange(range: Range): Range {
  return {
    start: { line: range.start.line, character: range.start.character },
    end: { line: range.end.line, character: range.end.character },
  };
}

/** The one argument every Diffill server command takes. */
export function commandTarget(uri: string, range: Range): { uri: string; range: Range } {
  return { uri, range: plainRange(range) };
}

/** What `textDocument/inlineCompletion` carries about the item selected in the suggest widget. */
export interface InlineContext {
  triggerKind: number;
  selectedCompletionInfo?: { range: Range; text: string };
}

/**
 * The inline-completion context with plain LSP positions. vscode-languageclient 9.0.1 sends VS Code's
 * `SelectedCompletionInfo` as it is, and a `vscode.Range` serialises as `[start, end]`, which the server
 * cannot read (microsoft/vscode-languageserver-node#1371, fixed after 9.0.1; later versions need VS Code 1.91).
 */
export function plainInlineContext<C extends InlineContext>(context: C): C {
  const info = context.selectedCompletionInfo;
  if (!info) {
    return context;
  }
  // Typed as the caller's context: the client only serialises it, and plain positions are what it must send.
  return { ...context, selectedCompletionInfo: { range: plainRange(info.range), text: info.text } } as C;
}

export type ServerState = 'loading' | 'ready' | 'busy' | 'error' | 'stopped';

/** Status bar text and tooltip for a `diffill/status` notification. */
export function statusView(state: string, message?: string): { text: string; tooltip: string; error: boolean } {
  const icons: Record<string, string> = {
    loading: '$(sync~spin)', ready: '$(check)', busy: '$(loading~spin)', error: '$(error)', stopped: '$(circle-slash)',
  };
  const icon = icons[state] ?? '$(question)';
  const detail = message ? `: ${message}` : '';
  return { text: `${icon} Diffill`, tooltip: `Diffill ${state}${detail}. Click for the server log.`, error: state === 'error' || state === 'stopped' };
}
