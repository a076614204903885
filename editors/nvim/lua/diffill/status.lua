-- The server's `diffill/status` notifications ({state, message}) and the last `diffill.status` result.
local M = { current = nil, last = nil }

local labels = { loading = 'loading…', ready = 'ready', busy = 'writing…', error = 'error' }

--- Handler body for the `diffill/status` notification.
function M.update(params, client_id)
  if type(params) ~= 'table' or type(params.state) ~= 'string' then
    return
  end
  local previous, now = M.current, { state = params.state, message = params.message or '', client_id = client_id }
  M.current = now
  local repeated = previous and previous.state == now.state and previous.message == now.message
  vim.schedule(function()
    if now.state == 'error' and not repeated then -- a model that cannot load: say so once
      vim.notify('Diffill: ' .. now.message, vim.log.levels.ERROR)
    end
    vim.api.nvim_exec_autocmds('User', { pattern = 'DiffillStatus', modeline = false, data = now })
    vim.cmd('redrawstatus')
  end)
end

--- A short string for 'statusline', e.g. "Diffill: ready"; "" before the server said anything.
function M.statusline()
  local s = M.current
  if not s then
    return ''
  end
  return 'Diffill: ' .. (labels[s.state] or s.state)
end

return M
