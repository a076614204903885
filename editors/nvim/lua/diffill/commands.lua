-- :Diffill {fill|rewrite|proofread|bridge|continue|status|log}: the server's workspace/executeCommand jobs.
-- The server reports $/progress and applies the edit itself (workspace/applyEdit).
local api = vim.api
local M = { subcommands = { 'fill', 'rewrite', 'proofread', 'bridge', 'continue', 'status', 'log' } }
local DEFAULT_MARKER = [[\[MASK\]|_{3,}]]

local function notify(msg, level)
  vim.notify('Diffill: ' .. msg, level or vim.log.levels.INFO)
end

local function client_for(bufnr)
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = 'diffill' })[1]
  if not client then
    notify('the server is not attached to this buffer (see :checkhealth diffill)', vim.log.levels.WARN)
  end
  return client
end

--- Run a server command with one {uri, range} or {uri, position} argument; `done(result)` on success.
function M.execute(bufnr, command, arg, done)
  local client = client_for(bufnr)
  if not client then
    return false
  end
  local params = { command = command, arguments = arg and { arg } or {} }
  local handler = function(err, result)
    if err then
      notify(command .. ' failed: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    end
    api.nvim_exec_autocmds('User', { pattern = 'DiffillDone', modeline = false,
      data = { command = command, result = result, error = err } })
    if done and not err then
      done(result)
    end
  end
  if vim.fn.has('nvim-0.11') == 1 then
    return client:request('workspace/executeCommand', params, handler, bufnr)
  end
  return client.request('workspace/executeCommand', params, handler, bufnr)
end

-- LSP position of byte column `col` on 0-based `row`.
local function position(bufnr, row, col, enc)
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  col = math.min(col, #line)
  return { line = row, character = col > 0 and vim.lsp.util.character_offset(bufnr, row, col, enc) or 0 }
end

--- The LSP range of a command range (line1..line2), the visual selection when it spans those lines,
--- and the text it covers.
function M.range(bufnr, line1, line2, enc)
  local s, e = api.nvim_buf_get_mark(bufnr, '<'), api.nvim_buf_get_mark(bufnr, '>')
  local r1, c1, r2, c2 = line1 - 1, 0, line2 - 1, #(api.nvim_buf_get_lines(bufnr, line2 - 1, line2, false)[1] or '')
  if vim.fn.visualmode() == 'v' and s[1] == line1 and e[1] == line2 then
    c1 = math.min(s[2], #(api.nvim_buf_get_lines(bufnr, r1, r1 + 1, false)[1] or ''))
    local last = api.nvim_buf_get_lines(bufnr, r2, r2 + 1, false)[1] or ''
    c2 = e[2] < #last and e[2] + 1 + vim.str_utf_end(last, e[2] + 1) or #last
  end
  local text = table.concat(api.nvim_buf_get_text(bufnr, r1, c1, r2, c2, {}), '\n')
  return { start = position(bufnr, r1, c1, enc), ['end'] = position(bufnr, r2, c2, enc) }, text
end

local function has_marker(text)
  local pattern = (require('diffill').config.server or {}).gapMarker or DEFAULT_MARKER
  local ok, re = pcall(vim.regex, '\\v' .. pattern)
  if not ok then
    re = vim.regex('\\v' .. DEFAULT_MARKER)
  end
  for _, line in ipairs(vim.split(text, '\n', { plain = true })) do
    if re:match_str(line) then
      return true
    end
  end
  return false
end

--- Show the server's state, model and settings (diffill.status), and remember the result.
function M.status(bufnr)
  local status = require('diffill.status')
  local function show(res)
    res = res or status.current or {}
    local lines = { ('Diffill: %s %s'):format(res.state or 'not running', res.message or '') }
    if res.model and res.model ~= vim.NIL then
      lines[#lines + 1] = 'model: ' .. res.model
    end
    if type(res.settings) == 'table' then
      local keys = vim.tbl_keys(res.settings)
      table.sort(keys)
      for _, k in ipairs(keys) do
        lines[#lines + 1] = ('  %s = %s'):format(k, vim.inspect(res.settings[k]))
      end
    end
    vim.notify(table.concat(lines, '\n'), vim.log.levels.INFO)
  end
  if not vim.lsp.get_clients({ bufnr = bufnr, name = 'diffill' })[1] then
    return show(nil)
  end
  M.execute(bufnr, 'diffill.status', nil, function(res)
    status.last = res
    show(res)
  end)
end

--- The server log file: $DIFFILL_LOG_DIR/server.log, else platformdirs' user_log_dir("diffill").
function M.log_path()
  local dir = vim.env.DIFFILL_LOG_DIR
  if not dir or dir == '' then
    local sys = vim.uv.os_uname().sysname
    if sys == 'Darwin' then
      dir = '~/Library/Logs/diffill'
    elseif sys:match('Windows') then
      dir = (vim.env.LOCALAPPDATA or '~/AppData/Local') .. '/diffill/diffill/Logs'
    else
      local state = vim.env.XDG_STATE_HOME
      dir = ((state and vim.trim(state) ~= '') and state or '~/.local/state') .. '/diffill/log'
    end
  end
  return vim.fs.joinpath(vim.fs.normalize(dir), 'server.log')
end

function M.open_log(which)
  local path = which == 'lsp' and vim.lsp.get_log_path() or M.log_path()
  if vim.fn.filereadable(path) == 0 then
    return notify(('no log at %s yet (Neovim LSP log: %s)'):format(path, vim.lsp.get_log_path()),
      vim.log.levels.WARN)
  end
  vim.cmd('split ' .. vim.fn.fnameescape(path))
end

--- :Diffill entry point (opts as given to nvim_create_user_command callbacks).
function M.run(opts)
  local sub, bufnr = opts.fargs[1], api.nvim_get_current_buf()
  if sub == 'status' then
    return M.status(bufnr)
  elseif sub == 'log' then
    return M.open_log(opts.fargs[2])
  elseif not vim.tbl_contains(M.subcommands, sub or '') then
    return notify('usage: :Diffill {' .. table.concat(M.subcommands, '|') .. '}', vim.log.levels.ERROR)
  end
  local client = client_for(bufnr)
  if not client then
    return
  end
  local uri, enc = vim.uri_from_bufnr(bufnr), client.offset_encoding
  local range, text
  if opts.range > 0 then
    range, text = M.range(bufnr, opts.line1, opts.line2, enc)
  end
  local cur = api.nvim_win_get_cursor(0)
  local here = { uri = uri, position = position(bufnr, cur[1] - 1, cur[2], enc) }
  if sub == 'fill' then
    if range and not has_marker(text) then
      return M.execute(bufnr, 'diffill.fillSelection', { uri = uri, range = range })
    end
    return M.execute(bufnr, 'diffill.fillGaps', range and { uri = uri, range = range } or here)
  elseif sub == 'rewrite' then
    if not range then
      return notify('select the text to rewrite first (:\'<,\'>Diffill rewrite)', vim.log.levels.WARN)
    end
    return M.execute(bufnr, 'diffill.rewriteSelection', { uri = uri, range = range })
  elseif sub == 'proofread' then
    -- the selection or lines given (:%Diffill proofread for the buffer), else the cursor's line
    if not range then
      local row = cur[1] - 1
      local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
      range = { start = position(bufnr, row, 0, enc), ['end'] = position(bufnr, row, #line, enc) }
    end
    return M.execute(bufnr, 'diffill.proofreadSelection', { uri = uri, range = range })
  end
  return M.execute(bufnr, 'diffill.' .. sub, here) -- bridge, continue: at the cursor
end

function M.complete(arglead, cmdline)
  if cmdline:match('^%S*%s+log%s+') then
    return { 'lsp' }
  end
  return vim.tbl_filter(function(s) return vim.startswith(s, arglead) end, M.subcommands)
end

return M
