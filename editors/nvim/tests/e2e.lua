-- End-to-end test in headless Neovim against the real Diffill server (driven by tests/test_nvim.py):
--   DIFFILL_E2E=this file nvim --headless --clean -c "lua dofile(vim.env.DIFFILL_E2E)"
-- Env: DIFFILL_PLUGIN_DIR, DIFFILL_TEST_PYTHON, DIFFILL_TEST_MODEL (a path or a name; empty: the shipped
-- default, as a user gets it), DIFFILL_TEST_DIR, DIFFILL_TEST_OUT.
-- Writes a JSON report to DIFFILL_TEST_OUT; exits 0 (qa!) when every step passed, else cquit 1.
-- The steps run in a coroutine that sleeps on timers, so typeahead, autocmds and RPC all run normally.
local env = vim.env
vim.opt.runtimepath:prepend(env.DIFFILL_PLUGIN_DIR)
local api = vim.api
local report = { steps = {}, notifications = {} }
local co

local notify = vim.notify
vim.notify = function(msg, level, o)
  table.insert(report.notifications, { msg = msg, level = level })
  return notify(msg, level, o)
end

local function finish(err)
  report.error = err
  report.status = require('diffill.status').current
  local f = assert(io.open(env.DIFFILL_TEST_OUT, 'w'))
  f:write(vim.json.encode(report))
  f:close()
  if err then
    io.stderr:write('e2e failed: ' .. err .. '\n')
    vim.cmd('cquit 1')
  else
    vim.cmd('qa!')
  end
end

local function sleep(ms)
  vim.defer_fn(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      finish(debug.traceback(co, err))
    end
  end, ms)
  coroutine.yield()
end

local function wait_for(what, cond, timeout)
  local start = vim.uv.now()
  while true do
    local v = cond()
    if v then
      return v
    end
    if vim.uv.now() - start > (timeout or 30000) then
      error('timed out waiting for ' .. what, 2)
    end
    sleep(50)
  end
end

local function check(cond, msg)
  if not cond then
    error(msg, 2)
  end
end

local function text(bufnr)
  return table.concat(api.nvim_buf_get_lines(bufnr or 0, 0, -1, false), '\n')
end

local function keys(k)
  api.nvim_feedkeys(vim.keycode(k), 'm', false)
  sleep(20)
end

local function extmarks(bufnr)
  return api.nvim_buf_get_extmarks(bufnr or 0, require('diffill.ghost').ns, 0, -1, { details = true })
end

local function open(name, lines)
  vim.cmd('edit ' .. vim.fn.fnameescape(env.DIFFILL_TEST_DIR .. '/' .. name))
  api.nvim_buf_set_lines(0, 0, -1, false, lines)
  local b = api.nvim_get_current_buf()
  wait_for('the server to attach to ' .. name, function()
    return vim.lsp.get_clients({ bufnr = b, name = 'diffill' })[1]
  end)
  return b
end

local function main()
  -- 1. Bad options are reported and replaced by defaults.
  local cfg, problems = require('diffill.config').resolve({ debounce = -1, trigger = 'sometimes', wat = 1,
    keys = { accept = 3, next = false } })
  check(#problems == 4, 'expected 4 problems, got ' .. vim.inspect(problems))
  check(cfg.debounce == 150 and cfg.trigger == 'automatic' and cfg.keys.accept == '<M-l>' and cfg.keys.next == false,
    'bad options not replaced by defaults: ' .. vim.inspect(cfg))
  require('diffill').setup({ trigger = 12 })
  check(report.notifications[1] and report.notifications[1].msg:match('trigger'), 'setup() did not report a bad option')
  report.steps.options = problems

  -- 1b. A server command that is not executable is reported at setup, with how to set cmd.
  local seen = #report.notifications
  require('diffill').setup({ cmd = { env.DIFFILL_TEST_DIR .. '/no/such/diffill', 'serve' } })
  report.steps.missing_cmd = vim.tbl_map(function(n) return n.msg end, vim.list_slice(report.notifications, seen + 1))

  -- 2. Start the real server; wait until the model is loaded.
  local model = env.DIFFILL_TEST_MODEL or ''
  local cmd = { env.DIFFILL_TEST_PYTHON, '-m', 'server' }
  if model ~= '' then
    vim.list_extend(cmd, { '--model', model })
  end
  local base = { cmd = cmd, server = { maxTokens = 6, candidates = 2 }, debounce = 50 }
  require('diffill').setup(base)
  local b = open('doc.py', { 'def add(a, b):', '    return ' })
  wait_for('diffill/status ready', function()
    local s = require('diffill.status').current
    check(not (s and s.state == 'error'), 'server error: ' .. vim.inspect(s))
    return s and s.state == 'ready'
  end, 90000)
  report.steps.statusline = require('diffill').statusline()
  check(report.steps.statusline == 'Diffill: ready', 'statusline: ' .. report.steps.statusline)
  report.steps.highlight = api.nvim_get_hl(0, { name = 'DiffillSuggestion', link = false })

  -- 3. Ghost text as you type (automatic trigger), accepted with the accept key.
  api.nvim_win_set_cursor(0, { 2, 10 })
  keys('A')
  keys('a')
  local ghost = wait_for('ghost text', function()
    return #extmarks(b) > 0 and require('diffill').suggestion()
  end)
  local mark = extmarks(b)[1]
  check(mark[2] == 1 and mark[3] == 12 and mark[4].virt_text and mark[4].virt_text_pos == 'inline',
    'ghost text not drawn inline at the cursor: ' .. vim.inspect(mark))
  local before = text(b)
  keys('<M-l>')
  local after = text(b)
  report.steps.ghost = { suggestion = ghost, before = before, after = after }
  check(after == before .. ghost, 'accepting did not insert exactly the suggestion')
  check(api.nvim_win_get_cursor(0)[1] >= 2, 'cursor not after the accepted text')
  keys('<Esc>')
  sleep(50)
  check(#extmarks(b) == 0, 'ghost text left after leaving insert mode')

  -- 4. Manual suggestion, cycling, accepting one word, then dismissing.
  api.nvim_buf_set_lines(b, 0, -1, false, { 'The quick brown fox jumps over the ' })
  keys('A')
  keys('<M-\\>')
  local full = wait_for('manual suggestion', function() return require('diffill').suggestion() end)
  keys('<M-]>')
  check(require('diffill').suggestion(), 'no suggestion after cycling')
  full = require('diffill').suggestion()
  before = text(b)
  keys('<M-w>')
  local word = text(b):sub(#before + 1)
  check(#word > 0 and full:sub(1, #word) == word, ('accept word inserted %q, not a prefix of %q'):format(word, full))
  local rest = require('diffill').suggestion()
  check(rest == nil and word == full or rest == full:sub(#word + 1), 'the rest of the suggestion is not shown')
  keys('<C-]>')
  check(#extmarks(b) == 0 and not require('diffill').suggestion(), 'dismiss left ghost text')
  report.steps.word = { suggestion = full, word = word, rest = rest }
  keys('<Esc>')

  -- 4b. Manual trigger: typing asks nothing, the suggest key does; a disabled filetype gets nothing.
  local function quiet(what)
    keys('A')
    keys(' x')
    sleep(600)
    check(#extmarks(b) == 0, what .. ': ghost text appeared')
  end
  require('diffill').setup(vim.tbl_extend('force', base, { trigger = 'manual' }))
  quiet('manual trigger, typing')
  keys('<M-\\>')
  wait_for('ghost text on the suggest key', function() return #extmarks(b) > 0 end)
  keys('<Esc>')
  require('diffill').setup(vim.tbl_extend('force', base, { filetypes = { python = false } }))
  quiet('python disabled')
  keys('<Esc>')
  require('diffill').setup(base)
  report.steps.manual = true

  -- 5. :Diffill fill replaces the [MASK] marker.
  local fb = open('story.txt', { 'The quick [MASK] fox jumps over the lazy dog.' })
  vim.cmd('Diffill fill')
  wait_for(':Diffill fill to replace the marker', function() return not text(fb):find('[MASK]', 1, true) end)
  local filled = text(fb)
  check(filled:match('^The quick .* fox jumps over the lazy dog%.$'), 'fill changed text around the gap: ' .. filled)
  report.steps.fill = filled

  -- 6. The "fill gaps" code action (edit computed in codeAction/resolve) replaces a ___ marker.
  api.nvim_buf_set_lines(fb, 0, -1, false, { 'A language server ___ requests from an editor.' })
  api.nvim_win_set_cursor(0, { 1, 20 })
  vim.lsp.buf.code_action({ apply = true, filter = function(a) return a.title == 'Diffill: fill gaps' end })
  wait_for('the code action to replace the marker', function() return not text(fb):find('___', 1, true) end)
  filled = text(fb)
  check(filled:match('^A language server .* requests from an editor%.$'), 'code action edit: ' .. filled)
  report.steps.code_action = filled

  -- 7. A visual selection: :'<,'>Diffill fill (no marker: fillSelection) and :'<,'>Diffill rewrite.
  local done = {}
  api.nvim_create_autocmd('User', { pattern = 'DiffillDone', callback = function(a) done[#done + 1] = a.data end })
  for _, case in ipairs({ { 'fill', 'diffill.fillSelection' }, { 'rewrite', 'diffill.rewriteSelection' } }) do
    api.nvim_buf_set_lines(fb, 0, -1, false, { 'Tabs and double spaces.', 'The quick brown fox jumps.' })
    api.nvim_win_set_cursor(0, { 2, 10 })
    keys('viw<Esc>') -- selects "brown"
    local n = #done
    vim.cmd("'<,'>Diffill " .. case[1])
    local d = wait_for(case[1] .. ' on a selection', function() return done[n + 1] end)
    local lines = api.nvim_buf_get_lines(fb, 0, -1, false)
    check(d.command == case[2] and d.result and d.result.applied, case[1] .. ': ' .. vim.inspect(d))
    check(lines[1] == 'Tabs and double spaces.' and lines[2]:match('^The quick .* fox jumps%.$')
      and lines[2] == 'The quick ' .. d.result.texts[1] .. ' fox jumps.', case[1] .. ' edited outside the selection')
    report.steps[case[1] .. '_selection'] = { command = d.command, lines = lines }
  end

  -- 7b. :Diffill proofread on the cursor's line: only whole words change, every other byte stays.
  api.nvim_buf_set_lines(fb, 0, -1, false, { 'Teh cat  sat on teh mat, and the dog barked.', 'Untouched line.' })
  api.nvim_win_set_cursor(0, { 1, 3 })
  local n = #done
  vim.cmd('Diffill proofread')
  local d = wait_for('proofread on the line', function() return done[n + 1] end)
  local lines = api.nvim_buf_get_lines(fb, 0, -1, false)
  local skeleton = function(l) return (l:gsub('[%w_]+', 'W')) end
  check(d.command == 'diffill.proofreadSelection' and d.result
    and (d.result.applied or d.result.reason == 'nothing to change'), 'proofread: ' .. vim.inspect(d))
  check(lines[2] == 'Untouched line.' and skeleton(lines[1]) == skeleton('Teh cat  sat on teh mat, and the dog barked.'),
    'proofread changed more than words: ' .. vim.inspect(lines))
  report.steps.proofread_line = { result = d.result, lines = lines }

  -- 8. :Diffill status asks the server (diffill.status) for state, model and settings.
  vim.cmd('Diffill status')
  local st = wait_for('diffill.status result', function() return require('diffill.status').last end)
  -- The server reports the model's directory: the path given, or the folder a name resolves to.
  check(st.model and (model == '' or st.model == model or vim.fs.basename(st.model) == model)
    and st.settings.maxTokens == 6, 'status: ' .. vim.inspect(st))
  report.steps.status = st

  -- 9. :checkhealth diffill reports OK lines and no ERROR.
  vim.cmd('checkhealth diffill')
  local lines = api.nvim_buf_get_lines(0, 0, -1, false)
  report.steps.health = lines
  local joined = table.concat(lines, '\n')
  check(joined:find('OK'), 'no OK line in :checkhealth diffill')
  check(not joined:find('ERROR'), ':checkhealth diffill reported an ERROR')

  -- 10. With no suggestion shown the accept key does what it did before: the mapping it had ...
  require('diffill').setup(vim.tbl_extend('force', base, { trigger = 'manual' }))
  vim.keymap.set('i', '<M-l>', 'before', {}) -- mapped before Diffill attaches to the next buffer
  local kb = open('keys.txt', { 'abc' })
  keys('A<M-l>')
  local mapped = text(kb)
  keys('<Esc>')
  vim.keymap.del('i', '<M-l>')
  -- ... or, unmapped, its built-in meaning: an Alt key typed in Insert mode is <Esc> and the key
  local kb2 = open('keys2.txt', { 'abc' })
  api.nvim_feedkeys(vim.keycode('A<M-l>'), 'mt', false) -- 't': as typed
  sleep(50)
  report.steps.keys = { mapped = mapped, unmapped = text(kb2), mode = api.nvim_get_mode().mode }
  vim.cmd('stopinsert')
end

co = coroutine.create(function()
  local ok, err = xpcall(main, debug.traceback)
  finish(not ok and tostring(err) or nil)
end)
local ok, err = coroutine.resume(co)
if not ok then
  finish(tostring(err))
end
