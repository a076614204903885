-- Diffill for Neovim: offline gap filling with a local masked-diffusion model.
--   require('diffill').setup({ cmd = { 'diffill', 'serve' }, server = { maxTokens = 16 } })
-- See editors/README.md and :checkhealth diffill.
local api = vim.api
local config = require('diffill.config')
local ghost = require('diffill.ghost')
local keys = require('diffill.keys')
local status = require('diffill.status')

local M = { config = vim.deepcopy(config.defaults), statusline = status.statusline }
local attached = {} -- bufnr -> true

local function builtin()
  return M.config.builtin and M.config.trigger == 'automatic' and vim.fn.has('nvim-0.12') == 1
    and vim.lsp.inline_completion ~= nil
end

local function buf()
  return api.nvim_get_current_buf()
end

--- Ask for suggestions at the cursor now (the manual trigger).
function M.suggest()
  return not builtin() and ghost.request(buf(), true)
end

--- Accept the whole suggestion, or (kind = 'word' | 'line') a piece of it. False when none is shown.
function M.accept(kind)
  if not builtin() then
    return ghost.accept(buf(), kind)
  end
  return vim.lsp.inline_completion.get({
    bufnr = buf(),
    on_accept = kind and function(item)
      local text = type(item.insert_text) == 'string' and item.insert_text or item.insert_text.value
      local lines = vim.split(ghost.cut(text, kind), '\n', { plain = true })
      local pos = api.nvim_win_get_cursor(0)
      local r = item.range and { item.range.start.row, item.range.start.col, item.range.end_.row, item.range.end_.col }
        or { pos[1] - 1, pos[2], pos[1] - 1, pos[2] }
      api.nvim_buf_set_text(0, r[1], r[2], r[3], r[4], lines)
      api.nvim_win_set_cursor(0, { r[1] + #lines, (#lines == 1 and r[2] or 0) + #lines[#lines] })
    end or nil,
  })
end

function M.next()
  if builtin() then
    return vim.lsp.inline_completion.select({ count = 1 }) or true
  end
  return ghost.cycle(buf(), 1)
end

function M.prev()
  if builtin() then
    return vim.lsp.inline_completion.select({ count = -1 }) or true
  end
  return ghost.cycle(buf(), -1)
end

function M.dismiss()
  if builtin() then
    return vim.lsp.inline_completion.get({ on_accept = function() end })
  end
  local shown = ghost.current(buf()) ~= nil
  ghost.dismiss(buf())
  return shown
end

--- The suggestion shown at the cursor (the rest not yet typed), or nil. Plugin-drawn ghost text only.
function M.suggestion()
  return ghost.current(buf())
end

local actions = { accept = function() return M.accept() end, accept_word = function() return M.accept('word') end,
  accept_line = function() return M.accept('line') end, next = M.next, prev = M.prev, dismiss = M.dismiss,
  suggest = M.suggest }

local function attach(bufnr, client)
  if attached[bufnr] then
    return
  end
  attached[bufnr] = true
  local function wanted()
    return config.filetype_enabled(M.config, vim.bo[bufnr].filetype)
  end
  if builtin() then
    vim.lsp.inline_completion.enable(wanted(), { bufnr = bufnr, client_id = client.id })
  else
    ghost.attach(bufnr, function() return M.config.trigger == 'automatic' and wanted() end,
      function() return M.config.debounce end)
  end
  for action, lhs in pairs(M.config.keys) do
    if lhs then
      keys.map(bufnr, lhs, function() return wanted() and actions[action]() end, (action:gsub('_', ' ')))
    end
  end
end

local function detach(bufnr)
  attached[bufnr] = nil
  ghost.detach(bufnr)
end

-- Neovim 0.10 has no vim.lsp.config: start the same config from a FileType autocmd.
local function start_on_filetype(group, overrides)
  local file = api.nvim_get_runtime_file('lsp/diffill.lua', false)[1]
  local base = vim.tbl_extend('force', dofile(file), overrides, { name = 'diffill' })
  local function start(bufnr)
    if vim.bo[bufnr].buftype == '' then
      local cfg = vim.tbl_extend('force', base, { root_dir = vim.fs.root(bufnr, base.root_markers) })
      vim.lsp.start(cfg, { bufnr = bufnr, reuse_client = base.reuse_client })
    end
  end
  api.nvim_create_autocmd('FileType', { group = group, callback = function(a) start(a.buf) end })
  for _, b in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(b) and vim.bo[b].filetype ~= '' then
      start(b)
    end
  end
end

function M.setup(opts)
  local cfg, problems = config.resolve(opts)
  if #problems > 0 then
    table.sort(problems)
    vim.notify('Diffill: bad options replaced by defaults:\n' .. table.concat(problems, '\n'), vim.log.levels.WARN)
  end
  local missing, fix = config.cmd_problem(cfg.cmd)
  if missing then -- else the server silently never starts and :Diffill status only says "not running"
    vim.notify(('Diffill: the server cannot start: %s.\n%s (:checkhealth diffill checks it).'):format(missing, fix),
      vim.log.levels.ERROR)
  end
  M.config = cfg
  local group = api.nvim_create_augroup('diffill', { clear = true })
  -- Comment's and NonText's colours, plus a terminal colour: Neovim's default scheme gives them a GUI colour
  -- only, so without 'termguicolors' ghost text would look like typed text. 8: grey in most terminal palettes.
  local function dim(name, like)
    local hl = api.nvim_get_hl(0, { name = like, link = false })
    api.nvim_set_hl(0, name, { fg = hl.fg, ctermfg = hl.ctermfg or 8, default = true })
  end
  local function highlights()
    dim('DiffillSuggestion', 'Comment')
    dim('DiffillAnnotation', 'NonText')
  end
  highlights()
  api.nvim_create_autocmd('ColorScheme', { group = group, callback = highlights })
  api.nvim_create_user_command('Diffill', function(o) require('diffill.commands').run(o) end, {
    nargs = '+', range = true, desc = 'Diffill: fill, rewrite, proofread, bridge, continue, status, log',
    complete = function(...) return require('diffill.commands').complete(...) end,
  })
  api.nvim_create_autocmd('LspAttach', { group = group, callback = function(a)
    local client = vim.lsp.get_client_by_id(a.data.client_id)
    if client and client.name == 'diffill' then
      attach(a.buf, client)
    end
  end })
  api.nvim_create_autocmd('LspDetach', { group = group, callback = function(a)
    local client = vim.lsp.get_client_by_id(a.data.client_id)
    if client and client.name == 'diffill' then
      detach(a.buf)
    end
  end })
  for _, client in ipairs(vim.lsp.get_clients({ name = 'diffill' })) do -- setup() after the server started
    for bufnr in pairs(client.attached_buffers) do
      attach(bufnr, client)
    end
  end

  local lsp = { cmd = cfg.cmd }
  if next(cfg.server) then -- an empty table would reach the server as a JSON list
    lsp.init_options, lsp.settings = { diffill = cfg.server }, { diffill = cfg.server }
  end
  if vim.lsp.config then
    vim.lsp.config('diffill', lsp)
    vim.lsp.enable('diffill')
  else
    start_on_filetype(group, lsp)
  end
end

return M
