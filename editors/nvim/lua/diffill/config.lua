-- Options for require('diffill').setup(): defaults, and validation that never throws.
local M = {}

M.defaults = {
  cmd = { 'diffill', 'serve' }, -- how to start the server; add '--model', PATH to pin a model
  server = {}, -- Diffill server settings: model, maxTokens, candidates, steps, threshold, gapMarker, ...
  trigger = 'automatic', -- 'automatic' (as you type) or 'manual' (keys.suggest)
  debounce = 150, -- ms of quiet typing before an automatic request
  filetypes = { ['*'] = true, help = false }, -- ghost text per filetype; '*' is the fallback
  builtin = true, -- on Neovim 0.12+, draw ghost text with vim.lsp.inline_completion (automatic trigger)
  keys = { -- insert-mode keys; false disables one
    accept = '<M-l>',
    accept_word = '<M-w>',
    accept_line = '<M-j>',
    next = '<M-]>',
    prev = '<M-[>',
    dismiss = '<C-]>',
    suggest = '<M-\\>',
  },
}

local function list_of_strings(v)
  if type(v) ~= 'table' or #v == 0 then
    return false
  end
  for _, s in ipairs(v) do
    if type(s) ~= 'string' then
      return false
    end
  end
  return true
end

local checks = {
  cmd = { function(v) return type(v) == 'function' or list_of_strings(v) end, 'a list of strings or a function' },
  server = { 'table' },
  trigger = { function(v) return v == 'automatic' or v == 'manual' end, "'automatic' or 'manual'" },
  debounce = { function(v) return type(v) == 'number' and v >= 0 end, 'a number of milliseconds >= 0' },
  filetypes = {
    function(v)
      if type(v) ~= 'table' then return false end
      for k, b in pairs(v) do
        if type(k) ~= 'string' or type(b) ~= 'boolean' then return false end
      end
      return true
    end,
    'a table of filetype = boolean',
  },
  builtin = { 'boolean' },
}

-- vim.validate's signature changed in 0.11; return the error message, or nil when `value` is good.
local function validate(name, value, validator, message)
  local ok, err
  if vim.fn.has('nvim-0.11') == 1 then
    ok, err = pcall(vim.validate, name, value, validator, false, message)
  else
    ok, err = pcall(vim.validate, { [name] = { value, validator, message } })
  end
  return not ok and tostring(err):gsub('^.-:%d+: ', '') or nil
end

--- Merge `opts` over the defaults. Each bad or unknown option is reported and replaced by its default.
--- @return table config, string[] problems
function M.resolve(opts)
  local cfg, problems = vim.deepcopy(M.defaults), {}
  if opts ~= nil and type(opts) ~= 'table' then
    return cfg, { 'setup() takes a table of options, not ' .. type(opts) }
  end
  for key, value in pairs(opts or {}) do
    if key == 'keys' then
      if type(value) ~= 'table' then
        problems[#problems + 1] = 'keys: expected a table, got ' .. type(value)
      else
        for action, lhs in pairs(value) do
          if M.defaults.keys[action] == nil then
            problems[#problems + 1] = ('keys.%s: unknown action ignored'):format(action)
          elseif lhs ~= false and (type(lhs) ~= 'string' or lhs == '') then
            problems[#problems + 1] = ('keys.%s: expected a key or false, got %s'):format(action, vim.inspect(lhs))
          else
            cfg.keys[action] = lhs
          end
        end
      end
    elseif checks[key] == nil then
      problems[#problems + 1] = ('%s: unknown option ignored'):format(tostring(key))
    else
      local err = validate(key, value, checks[key][1], checks[key][2])
      if err then
        problems[#problems + 1] = err
      elseif key == 'filetypes' then
        cfg.filetypes = vim.tbl_extend('force', cfg.filetypes, value)
      else
        cfg[key] = value
      end
    end
  end
  return cfg, problems
end

--- Why `cmd` cannot start the server, and how to fix that; nil when it can (a function is not checked).
--- @return string? problem, string? fix
function M.cmd_problem(cmd)
  if type(cmd) ~= 'table' or vim.fn.executable(cmd[1]) == 1 then
    return nil
  end
  return ('%s is not executable (not a file, or not on PATH)'):format(cmd[1]),
    "install Diffill (pip install diffill) or set cmd in setup() to a full path, e.g. "
      .. "cmd = { '/path/to/diffill/.venv/bin/diffill', 'serve' } or { '/path/to/python', '-m', 'server' }"
end

--- Whether ghost text is wanted for `filetype`.
function M.filetype_enabled(cfg, filetype)
  local v = cfg.filetypes[filetype]
  if v == nil then
    v = cfg.filetypes['*']
  end
  return v ~= false
end

return M
