// Plain-Node tests (node --test) of the client's logic; nothing here needs VS Code.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  chooseFill, commandTarget, expandPath, hasGapMarkers, initializationOptions, plainInlineContext, resolveServerLaunch,
  SERVER_SETTINGS, serverSettings, statusView,
} from '../logic';

const at = (line: number, character: number) => ({ line, character });
const range = (l1: number, c1: number, l2: number, c2: number) => ({ start: at(l1, c1), end: at(l2, c2) });

describe('settings -> initializationOptions', () => {
  // What vscode.workspace.getConfiguration('diffill').get(key) returns with a few user values.
  const config: Record<string, unknown> = {
    model: '/models/tiny', steps: 8, trigger: 'manual', enabledLanguages: ['*'],
    disabledLanguages: ['python'], maxTokens: 16, candidates: 2, threshold: 0.5, gapMarker: '<gap>',
    server: { command: 'diffill', args: [], pythonPath: '' }, trace: { server: 'off' },
  };
  const get = (key: string) => config[key];

  it('wraps the server settings in a "diffill" object', () => {
    assert.deepEqual(initializationOptions(get), {
      diffill: {
        model: '/models/tiny', steps: 8, trigger: 'manual', enabledLanguages: ['*'],
        disabledLanguages: ['python'], maxTokens: 16, candidates: 2, threshold: 0.5, gapMarker: '<gap>',
      },
    });
  });

  it('keeps the client-only server.* and trace.* settings out', () => {
    const s = serverSettings(get);
    assert.equal('server' in s, false);
    assert.equal('trace' in s, false);
  });

  it('passes on settings the server knows but the extension does not contribute', () => {
    assert.deepEqual(serverSettings((k) => ({ threads: 4, contextChars: 500, bogus: 1 })[k]), { threads: 4, contextChars: 500 });
  });

  it('leaves out unset values, so the server keeps its defaults', () => {
    assert.deepEqual(serverSettings(() => undefined), {});
    assert.deepEqual(serverSettings((k) => (k === 'model' ? null : undefined)), {});
  });

  it('keeps falsy but meaningful values', () => {
    assert.deepEqual(serverSettings((k) => ({ steps: 0, threshold: 0, model: '' })[k]), { model: '', steps: 0, threshold: 0 });
  });

  it('drops the removed strategy and nullSlots settings still written in a settings.json', () => {
    assert.deepEqual(serverSettings((k) => ({ strategy: 'one-shot', nullSlots: 8, maxTokens: 12 })[k]), { maxTokens: 12 });
  });

  it('sends every contributed setting except the client-only server.* and trace.*', () => {
    const manifest = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8'));
    const contributed = Object.keys(manifest.contributes.configuration.properties)
      .map((key) => key.replace(/^diffill\./, ''))
      .filter((key) => !/^(server|trace)\./.test(key));
    assert.deepEqual(contributed.filter((key) => !(SERVER_SETTINGS as readonly string[]).includes(key)), []);
  });
});

describe('fill command choice', () => {
  const cursor = range(1, 3, 1, 3);

  it('fills the gaps when the document has [MASK] and nothing is selected', () => {
    assert.deepEqual(chooseFill('The [MASK] sat on the mat.', cursor), { command: 'diffill.fillGaps', range: cursor });
  });

  it('fills the gaps marked with three or more underscores', () => {
    assert.equal(chooseFill('def f(x):\n    return ___\n', cursor)?.command, 'diffill.fillGaps');
    assert.equal(chooseFill('snake_case__name', cursor), undefined);
  });

  it('fills the selection when there is one, markers or not', () => {
    const sel = range(0, 4, 0, 10);
    assert.deepEqual(chooseFill('The [MASK] sat.', sel), { command: 'diffill.fillSelection', range: sel });
    assert.deepEqual(chooseFill('The cat sat.', sel), { command: 'diffill.fillSelection', range: sel });
  });

  it('treats a selection across lines as a selection', () => {
    assert.equal(chooseFill('a\nb', range(0, 1, 1, 0))?.command, 'diffill.fillSelection');
  });

  it('does nothing without markers or a selection', () => {
    assert.equal(chooseFill('Nothing to fill here.', cursor), undefined);
  });

  it('honours a custom gap marker', () => {
    assert.equal(chooseFill('a <gap> b', cursor, '<gap>')?.command, 'diffill.fillGaps');
    assert.equal(chooseFill('a [MASK] b', cursor, '<gap>'), undefined);
  });

  it('leaves a marker JavaScript cannot compile to the server', () => {
    assert.equal(hasGapMarkers('no gaps', '(?P<gap>XX)'), true);
    assert.equal(chooseFill('no gaps', cursor, '(?P<gap>XX)')?.command, 'diffill.fillGaps');
  });

  it('uses the default marker for an empty setting', () => {
    assert.equal(hasGapMarkers('a [MASK] b', ''), true);
  });

  it('builds the {uri, range} argument with plain LSP positions', () => {
    const sel = { start: { line: 2, character: 1, extra: true }, end: { line: 2, character: 5 } };
    assert.deepEqual(commandTarget('file:///a.txt', sel), { uri: 'file:///a.txt', range: range(2, 1, 2, 5) });
  });
});

describe('server command resolution', () => {
  const home = '/home/u';

  it('runs "diffill serve" by default', () => {
    assert.deepEqual(resolveServerLaunch({}, home), { command: 'diffill', args: ['serve'], env: {} });
    assert.deepEqual(resolveServerLaunch({ command: '  ', pythonPath: '' }, home).command, 'diffill');
  });

  it('appends the configured arguments', () => {
    assert.deepEqual(resolveServerLaunch({ command: '/opt/bin/diffill', args: ['--log-level', 'DEBUG'] }, home),
      { command: '/opt/bin/diffill', args: ['serve', '--log-level', 'DEBUG'], env: {} });
  });

  it('runs "<python> -m server" when a Python interpreter is set', () => {
    const launch = resolveServerLaunch({ command: 'diffill', args: ['--model', 'm'], pythonPath: '/venv/bin/python' }, home);
    assert.equal(launch.command, '/venv/bin/python');
    assert.deepEqual(launch.args, ['-m', 'server', '--model', 'm']);
    assert.equal(launch.env.PYTHONSAFEPATH, '1');
  });

  it('expands ~ and ${workspaceFolder}', () => {
    assert.equal(resolveServerLaunch({ pythonPath: '${workspaceFolder}/.venv/bin/python' }, home, '/ws').command,
      '/ws/.venv/bin/python');
    assert.equal(resolveServerLaunch({ command: '~/.local/bin/diffill' }, home).command, '/home/u/.local/bin/diffill');
    assert.equal(expandPath('a~b', home), 'a~b');
    assert.equal(expandPath('${workspaceFolder}/x', home), '${workspaceFolder}/x');
  });
});

describe('inline completion context', () => {
  // What vscode.Position and vscode.Range look like to JSON.stringify: a Range becomes [start, end].
  class VPosition {
    constructor(readonly line: number, readonly character: number) {}
    toJSON() { return { line: this.line, character: this.character }; }
  }
  class VRange {
    constructor(readonly start: VPosition, readonly end: VPosition) {}
    toJSON() { return [this.start, this.end]; }
  }
  const selected = { range: new VRange(new VPosition(0, 16), new VPosition(0, 18)), text: 'fox' };

  it('sends the suggest widget selection as an LSP Range, not [start, end]', () => {
    assert.equal(JSON.stringify({ triggerKind: 2, selectedCompletionInfo: selected }).includes('"range":['), true);
    const sent = JSON.parse(JSON.stringify(plainInlineContext({ triggerKind: 2, selectedCompletionInfo: selected })));
    assert.deepEqual(sent, { triggerKind: 2, selectedCompletionInfo: { range: range(0, 16, 0, 18), text: 'fox' } });
  });

  it('leaves a context without a selection as it is', () => {
    const context = { triggerKind: 1, selectedCompletionInfo: undefined };
    assert.equal(plainInlineContext(context), context);
  });
});

describe('status bar', () => {
  it('shows each server state', () => {
    assert.match(statusView('loading').text, /sync~spin/);
    assert.match(statusView('ready').text, /check/);
    assert.equal(statusView('ready').error, false);
    assert.equal(statusView('error', 'no model').error, true);
    assert.match(statusView('error', 'no model').tooltip, /no model/);
    assert.match(statusView('whatever').text, /Diffill/);
  });
});
