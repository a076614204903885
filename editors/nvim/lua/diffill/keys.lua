-- Diffill's insert-mode keys act only when there is something to act on (a suggestion to accept, to cycle or
-- to dismiss); otherwise the key does what it did before Diffill mapped it: the mapping it had, else its
-- built-in meaning. Not an `expr` mapping: accepting edits the buffer, which an expr mapping may not do.
local api = vim.api
local M = {}

local function feed(keys, remap)
  api.nvim_feedkeys(keys, 'i' .. (remap and 'm' or 'n'), false) -- 'i': now, before any typeahead
end

--- Do what `before` (maparg()'s dictionary, possibly empty) made `lhs` do.
local function fallback(lhs, before)
  local remap = before.noremap == 0
  if before.callback then
    local keys = before.callback()
    if before.expr == 1 and type(keys) == 'string' then
      feed(before.replace_keycodes == 1 and vim.keycode(keys) or keys, remap)
    end
  elseif before.rhs and before.rhs ~= '' then
    feed(vim.keycode(before.expr == 1 and api.nvim_eval(before.rhs) or before.rhs), remap)
  else
    -- Unmapped: the key as if typed, so Neovim gives it its own meaning (an unmapped <M-l> in Insert mode
    -- acts as <Esc>l; fed as not typed it would insert a literal "l").
    api.nvim_feedkeys(vim.keycode(lhs), 'int', false)
  end
end

--- Map `lhs` in Insert mode in `bufnr` to `act`, which returns true when it did something.
function M.map(bufnr, lhs, act, desc)
  local before = api.nvim_buf_call(bufnr, function() return vim.fn.maparg(lhs, 'i', false, true) end)
  if (before.desc or ''):match('^Diffill: ') then
    before = {} -- the buffer is attached again: that mapping is ours, not what the key did before
  end
  vim.keymap.set('i', lhs, function()
    if not act() then
      fallback(lhs, before)
    end
  end, { buffer = bufnr, desc = 'Diffill: ' .. desc })
end

return M
