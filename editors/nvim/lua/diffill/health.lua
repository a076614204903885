-- :checkhealth diffill — Neovim version, server command, Python, model, log file.
local M = {}
local health = vim.health

-- Ask the server's Python which version it is, where it finds the model and, for a model built on a
-- pretrained base (smollm2-diffill, the default), whether set-up fetched that base (without loading either).
local PROBE = [[
import json, sys
out = {"python": sys.version.split()[0]}
try:
    from diffusion_core.model.loading import resolve_model_dir
    path = resolve_model_dir(sys.argv[1] or None)
    out["model"] = str(path)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if isinstance(config, dict) and config.get("diffill_base"):
        from diffusion_core.model.assemble import base_spec_of
        from diffusion_core.model.base import base_dir, is_converted
        spec = base_spec_of(config)
        out["base"], out["base_ok"] = str(base_dir(spec)), is_converted(spec)
except ImportError as exc:
    out["import_error"] = str(exc)
except Exception as exc:
    out["model_error"] = str(exc)
print(json.dumps(out))
]]

-- The interpreter behind the command: itself if it is Python, else the shebang of a console script.
local function python_of(exe)
  if vim.fs.basename(exe):match('^python') then
    return exe
  end
  local f = io.open(exe, 'r')
  local first = f and f:read('*l') or ''
  if f then
    f:close()
  end
  return first:match('^#!%s*(%S*python[%d.]*)%s*$')
end

local function model_arg(cmd, server)
  for i, a in ipairs(cmd) do
    if a == '--model' then
      return cmd[i + 1]
    end
    local v = a:match('^%-%-model=(.+)')
    if v then
      return v
    end
  end
  return server.model or ''
end

function M.check()
  local cfg = require('diffill').config
  health.start('Neovim')
  if vim.fn.has('nvim-0.10') == 0 then
    health.error('Neovim 0.10 or newer is needed')
  else
    local builtin = cfg.builtin and cfg.trigger == 'automatic' and vim.fn.has('nvim-0.12') == 1
    local v = vim.version()
    health.ok(('Neovim %d.%d.%d; ghost text drawn by %s, trigger %s'):format(v.major, v.minor, v.patch,
      builtin and 'vim.lsp.inline_completion' or 'the plugin', cfg.trigger))
  end
  local clients = vim.lsp.get_clients({ name = 'diffill' })
  if #clients > 0 then
    health.ok(('server running (client id %d)%s'):format(clients[1].id,
      require('diffill.status').current and ', ' .. require('diffill').statusline() or ''))
  else
    health.info('the server is not running; it starts with the first file buffer after setup()')
  end

  health.start('Server command')
  if type(cfg.cmd) == 'function' then
    return health.info('cmd is a function; not checked')
  end
  local missing, fix = require('diffill.config').cmd_problem(cfg.cmd)
  if missing then
    return health.error(missing, { fix })
  end
  local exe = vim.fn.exepath(cfg.cmd[1])
  health.ok('cmd: ' .. table.concat(cfg.cmd, ' ') .. ' (' .. exe .. ')')

  health.start('Python and model')
  local python = python_of(exe)
  if not python or vim.fn.executable(python) == 0 then
    python = vim.fn.exepath('python3')
    health.warn(("cannot tell which Python runs %s; checking %s"):format(exe, python ~= '' and python or 'python3'))
  end
  local model = model_arg(cfg.cmd, cfg.server)
  local ok, res = pcall(function()
    return vim.system({ python, '-c', PROBE, model }, { text = true }):wait(30000)
  end)
  local info = ok and res.code == 0 and vim.json.decode(res.stdout) or nil
  if not info then
    return health.error('could not run ' .. python .. ': ' .. (ok and (res.stderr or '') or tostring(res)))
  end
  local major, minor = info.python:match('^(%d+)%.(%d+)')
  if tonumber(major) == 3 and tonumber(minor) >= 10 then
    health.ok('Python ' .. info.python .. ' (' .. python .. ')')
  else
    health.error('Python ' .. info.python .. ' is too old: Diffill needs 3.10 or newer')
  end
  if info.import_error then
    health.error('Diffill is not installed for ' .. python .. ': ' .. info.import_error)
  elseif info.model_error then
    health.error(info.model_error, { 'train or register a model (diffill train --register NAME), '
      .. "or point setup({ cmd = { ..., '--model', PATH } }) / server.model at a model directory" })
  else
    health.ok(('model %s: %s'):format(model ~= '' and model or 'default', info.model))
    if info.base and not info.base_ok then
      health.error('the model\'s pretrained base is not in ' .. info.base,
        { 'run `diffill fetch-base` once (scripts/setup.sh does); the server never downloads it' })
    elseif info.base then
      health.ok('pretrained base: ' .. info.base)
    end
  end

  health.start('Logs')
  local log = require('diffill.commands').log_path()
  health.info('server log: ' .. log .. (vim.fn.filereadable(log) == 1 and '' or ' (not written yet)'))
  health.info('Neovim LSP log: ' .. vim.lsp.get_log_path())
end

return M
