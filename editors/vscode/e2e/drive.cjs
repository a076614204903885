// Drives code-server (with the Diffill .vsix installed) in headless Chromium; see run.sh.
// Env: URL (workbench with the folder holding test.txt), OUT (results.json), SHOTS (screenshots; default OUT),
// CHROMIUM.
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const out = process.env.OUT || '.';
const shots = process.env.SHOTS || out;
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const results = {};
const failures = [];
const check = (name, ok, detail) => {
  results[name] = { ok, detail };
  log(ok ? 'PASS' : 'FAIL', name, JSON.stringify(detail));
  if (!ok) {
    failures.push(name);
  }
};

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`) });
  const sleep = (ms) => page.waitForTimeout(ms);
  // Monaco renders spaces as no-break spaces.
  const plain = (s) => s.replace(/\u00a0/g, ' ');
  // The document's editor (not the chat panel's input, which is a Monaco editor too).
  const docEditor = '.editor-group-container .monaco-editor .view-lines';
  // The document's lines as typed: in screen order (Monaco reuses line nodes out of order), without the ghost
  // text it renders among them.
  const editorText = async () => plain(await page.locator(docEditor).first().evaluate((el) => [...el.querySelectorAll('.view-line')]
    .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
    .map((line) => {
      const copy = line.cloneNode(true);
      copy.querySelectorAll('[class*="ghost-text"]').forEach((g) => g.remove());
      return copy.textContent;
    }).join('\n')));
  // Press Enter on a quick-pick row once one shows ``text`` (a slow machine lists results late).
  const pick = async (text) => {
    await page.locator('.quick-input-list .monaco-list-row', { hasText: text }).first().waitFor({ timeout: 30000 });
    await page.keyboard.press('Enter');
  };
  const ghosts = () => page.locator('.ghost-text-decoration, .ghost-text').count();
  const status = page.locator('[id="diffill.diffill.diffill.status"]');
  const statusIcon = async () => ((await status.innerHTML({ timeout: 2000 }).catch(() => '')).match(/codicon-([a-z-]+)/) || [])[1];
  const runCommand = async (title) => {
    await page.keyboard.press('Control+Shift+P');
    await page.waitForSelector('.quick-input-widget input', { timeout: 20000 });
    await page.keyboard.type(title);
    await pick(title);
  };
  // A command's edit: a fill takes well under a second, the server may still be busy with ghost text.
  const waitChange = async (before) => {
    let after = before;
    for (let i = 0; i < 60 && after === before; i++) {
      await sleep(1000);
      after = await editorText();
    }
    return after;
  };
  // Type words until ghost text shows, asking explicitly (Alt+\) when it does not come by itself:
  // the model may judge that nothing is missing at the cursor, and the server offers no empty fill.
  const getGhost = async (words) => {
    for (const w of words) {
      await page.keyboard.type(w);
      for (const ask of [false, true]) {
        if (ask) {
          await page.keyboard.press('Alt+Backslash');
        }
        for (let i = 0; i < 8; i++) {
          await sleep(1000);
          if (await ghosts()) {
            return page.locator('.ghost-text-decoration, .ghost-text').first().innerText();
          }
        }
      }
    }
    return null;
  };
  // The cursor as one comparable number, from the status bar's "Ln 3, Col 36".
  const cursor = async () => {
    const m = (await page.locator('[id="status.editor.selection"]').innerText().catch(() => '')).match(/Ln (\d+), Col (\d+)/);
    return m ? Number(m[1]) * 100000 + Number(m[2]) : NaN;
  };
  // Accepted (partly): the ghost text becomes real text, so the cursor moves on and the text is
  // kept. Not accepted: the suggestion is dismissed (or stays) and the cursor does not
  // move (the test types at the end of the document, where Ctrl+Right cannot move it).
  const accept = async (key, name, words) => {
    const ghostText = await getGhost(words);
    if (ghostText === null) {
      check(name, false, 'no ghost text appeared');
      return;
    }
    const before = await editorText();
    const pos = await cursor();
    await page.keyboard.press(key);
    await sleep(500);
    const after = await editorText();
    const posAfter = await cursor();
    check(name, posAfter > pos && after.startsWith(before.replace(/\s+$/, '')),
      { key, ghostText, cursor: [pos, posAfter], after: after.slice(-60) });
  };

  await page.goto(process.env.URL, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('.monaco-workbench', { timeout: 120000 });
  await sleep(5000);
  await page.keyboard.press('Control+P');
  await page.waitForSelector('.quick-input-widget input', { timeout: 20000 });
  await page.keyboard.type('test.txt');
  await pick('test.txt');
  await page.locator(docEditor, { hasText: 'quick brown' }).first().waitFor({ timeout: 30000 });
  log('editor open');

  let icon;
  for (let i = 0; i < 120 && !['check', 'error', 'circle-slash'].includes(icon); i++) {
    await sleep(1000);
    icon = await statusIcon();
  }
  check('status bar ready', icon === 'check', await status.getAttribute('aria-label').catch(() => null));
  await shot('1-ready');

  await page.locator(docEditor).first().click();
  await page.keyboard.press('Control+Home');
  let before = await editorText();
  await runCommand('Diffill: Fill Gaps or Selection');
  let after = await waitChange(before);
  check('diffill.fill (gaps)', before.includes('[MASK]') && !after.includes('[MASK]'), after.split('\n')[0]);

  await page.keyboard.press('Control+End');
  before = await editorText();
  await runCommand('Diffill: Continue Writing');
  after = await waitChange(before);
  check('diffill.continue', after !== before, after.slice(-60));

  // Rewrite and fill a made-up word: a real model could write a real one ("The") back unchanged, and the
  // check is that the text changed.
  await page.keyboard.press('Control+End');
  await page.keyboard.press('Enter');
  await page.keyboard.type('Zqxwv jumps over the fence.');
  await page.keyboard.press('Escape');
  const selectFirstWord = async () => {
    await page.keyboard.press('Home');
    await page.keyboard.press('Shift+Control+ArrowRight');
  };
  await selectFirstWord();
  before = await editorText();
  await runCommand('Diffill: Rewrite Selection');
  after = await waitChange(before);
  check('diffill.rewrite', after !== before, after.split('\n').pop());

  await selectFirstWord();
  before = await editorText();
  await runCommand('Diffill: Fill Gaps or Selection');
  after = await waitChange(before);
  check('diffill.fill (selection)', after !== before, after.split('\n').pop());
  await shot('2-commands');

  // Proofread a typed line: only whole words may change (or the server says there is nothing to change).
  await page.keyboard.press('Control+End');
  await page.keyboard.press('Enter');
  const typo = 'Teh cat sat on teh mat, and  the dog barked.';
  await page.keyboard.type(typo);
  await page.keyboard.press('Escape');
  await page.keyboard.press('Home');
  await page.keyboard.press('Shift+End');
  before = await editorText();
  await runCommand('Diffill: Proofread Selection');
  after = await waitChange(before);
  const skeleton = (s) => s.replace(/\w+/g, 'W');
  const proofToasts = await page.locator('.notifications-toasts').innerText().catch(() => '');
  // the typed line may start with the editor's auto-indentation (copied from the line above): not ours
  const lastLine = after.split('\n').pop().trimStart();
  check('diffill.proofreadSelection', after !== before ? skeleton(lastLine) === skeleton(typo)
    : /nothing to change/.test(proofToasts), { line: lastLine, toasts: proofToasts.slice(0, 200) });
  await page.keyboard.press('End');

  await page.keyboard.press('Control+End');
  await accept('Control+ArrowRight', 'inline: accept next word (ctrl+right)', [' the', ' cat', '\nIt', ' was', ' a']);
  await shot('3-inline');
  await accept('Control+Alt+ArrowRight', 'inline: accept next line (ctrl+alt+right)', [' and', ' so', ' on', '\nThe']);

  // Typing the start of a word in the document opens VS Code's suggest widget; ghost text must still come,
  // extending the selected suggestion (vscode-languageclient 9.0.1 sent its range malformed: the request failed).
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+End');
  await page.keyboard.press('Enter');
  let widgetAndGhost = false;
  for (const w of ['The qu', 'i', 'c']) {
    await page.keyboard.type(w);
    await sleep(500);
    if (!(await page.locator('.suggest-widget.visible').count())) {
      await page.keyboard.press('Control+Space');  // word suggestions from the document, as a user asks for them
    }
    for (let i = 0; i < 10 && !widgetAndGhost; i++) {
      await sleep(1000);
      widgetAndGhost = (await page.locator('.suggest-widget.visible').count()) > 0 && (await ghosts()) > 0;
    }
    if (widgetAndGhost) {
      break;
    }
  }
  const widgetGhost = widgetAndGhost ? await page.locator('.ghost-text-decoration, .ghost-text').first().innerText() : null;
  await shot('4-suggest-widget');
  const toasts = await page.locator('.notifications-toasts').innerText().catch(() => '');
  check('inline: ghost text with the suggest widget open', widgetAndGhost && !/inlineCompletion failed/.test(toasts),
    { ghostText: widgetGhost, toasts: toasts.slice(0, 200) });

  await page.keyboard.press('Escape');
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+Home');
  await page.keyboard.press('ArrowDown');  // the empty line between the two paragraphs
  await sleep(1500);
  await page.keyboard.press('Control+Period');
  await sleep(4000);
  const actions = await page.locator('.action-widget').first().innerText({ timeout: 5000 }).catch(() => '');
  check('code actions', actions.includes('Diffill: bridge paragraphs'), actions.replace(/\n/g, ' | '));
  await shot('5-actions');
  await page.keyboard.press('Escape');

  await runCommand('Diffill: Restart Server');
  const seen = [];
  for (let i = 0; i < 240; i++) {  // up to 2 minutes: the model loads again
    icon = await statusIcon();
    if (icon && seen[seen.length - 1] !== icon) {
      seen.push(icon);
    }
    if (seen.length > 1 && icon === 'check') {
      break;
    }
    await sleep(500);
  }
  check('diffill.restartServer', seen.length > 1 && seen[seen.length - 1] === 'check', seen);

  await runCommand('Diffill: Show Server Log');
  await sleep(3000);
  const logText = plain(await page.locator('.panel .monaco-editor').first().innerText({ timeout: 5000 }).catch(() => ''));
  check('diffill.showLog', /model ready/.test(logText), logText.slice(0, 200));
  await shot('6-log');
  await browser.close();
}

main().catch((err) => {
  failures.push(`error: ${err.message}`);
  console.error(err);
}).finally(() => {
  fs.writeFileSync(path.join(out, 'results.json'), JSON.stringify({ failures, results }, null, 2));
  log(failures.length ? `FAILED: ${failures.join(', ')}` : 'all checks passed', `(${path.join(out, 'results.json')})`);
  process.exitCode = failures.length ? 1 : 0;
});
