-- Ghost text at the cursor from textDocument/inlineCompletion, for Neovim 0.10/0.11 (and for the
-- manual trigger on 0.12+, whose built-in vim.lsp.inline_completion only triggers automatically).
-- One suggestion per buffer: requests are debounced and the previous one is cancelled; the first line
-- is drawn inline at the cursor, further lines as virt_lines. Typing what the suggestion says (or
-- accepting a word/line of it) keeps the rest on screen without asking the server again.
local api = vim.api
local M = { ns = api.nvim_create_namespace('diffill.ghost') }
local states = {} -- bufnr -> { timer, pending, client, anchor = {row, col}, tail, items, index, cycled }

local function rpc(client, method, ...) -- client:request (0.11) vs client.request (0.10)
  if vim.fn.has('nvim-0.11') == 1 then
    return client[method](client, ...)
  end
  return client[method](...)
end

local function state(bufnr)
  states[bufnr] = states[bufnr] or {}
  return states[bufnr]
end

local function cursor(bufnr)
  local win = api.nvim_get_current_win()
  if api.nvim_win_get_buf(win) ~= bufnr then
    return nil
  end
  local pos = api.nvim_win_get_cursor(win)
  return pos[1] - 1, pos[2]
end

local function line_after(bufnr, row, col)
  return (api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''):sub(col + 1)
end

--- The rest of the shown suggestion after what was typed (or accepted) since it arrived: text, i, n.
function M.current(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = states[bufnr]
  local row, col = cursor(bufnr)
  if not (st and st.items and row) then
    return nil
  end
  local ar, ac = st.anchor[1], st.anchor[2]
  if row < ar or (row == ar and col < ac) or line_after(bufnr, row, col) ~= st.tail then
    return nil
  end
  local typed = table.concat(api.nvim_buf_get_text(bufnr, ar, ac, row, col, {}), '\n')
  local rest = {}
  for _, t in ipairs(st.items) do
    if #t > #typed and t:sub(1, #typed) == typed then
      rest[#rest + 1] = t:sub(#typed + 1)
    end
  end
  if #rest == 0 then
    return nil
  end
  local i = (st.index - 1) % #rest + 1
  return rest[i], i, #rest
end

function M.clear(bufnr)
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

function M.render(bufnr)
  M.clear(bufnr)
  local text, i, n = M.current(bufnr)
  if not text then
    return false
  end
  local row, col = cursor(bufnr)
  local tab = (' '):rep(vim.bo[bufnr].tabstop)
  local lines = vim.split((text:gsub('\t', tab)), '\n', { plain = true })
  local first = { { lines[1], 'DiffillSuggestion' } }
  if states[bufnr].cycled and n > 1 then
    first[#first + 1] = { (' (%d/%d)'):format(i, n), 'DiffillAnnotation' }
  end
  local virt_lines = {}
  for k = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[k], 'DiffillSuggestion' } }
  end
  api.nvim_buf_set_extmark(bufnr, M.ns, row, col, {
    virt_text = first,
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = 'combine',
  })
  return true
end

local function cancel(st)
  if st.timer then
    st.timer:stop()
  end
  if st.pending and st.client and not rpc(st.client, 'is_stopped') then
    pcall(rpc, st.client, 'cancel_request', st.pending)
  end
  st.pending = nil
end

--- Forget the suggestion and any request in flight.
function M.dismiss(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = state(bufnr)
  cancel(st)
  st.items = nil
  M.clear(bufnr)
end

--- Ask the server for suggestions at the cursor (invoked = an explicit request).
function M.request(bufnr, invoked)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = state(bufnr)
  cancel(st)
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = 'diffill' })[1]
  local row, col = cursor(bufnr)
  if not (client and row) then
    return false
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = invoked and 1 or 2 } -- Invoked = 1, Automatic = 2
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local id
  local ok, request_id = rpc(client, 'request', 'textDocument/inlineCompletion', params, function(err, result)
    if st.pending ~= id then
      return -- superseded
    end
    st.pending = nil
    local r, c = cursor(bufnr)
    if err or not result or api.nvim_buf_get_changedtick(bufnr) ~= tick or r ~= row or c ~= col then
      return
    end
    local items = {}
    for _, item in ipairs(result.items or result) do
      local text = type(item.insertText) == 'table' and item.insertText.value or item.insertText
      if type(text) == 'string' and text ~= '' then
        items[#items + 1] = text
      end
    end
    st.anchor, st.tail, st.items, st.index, st.cycled = { row, col }, line_after(bufnr, row, col), items, 1, false
    M.render(bufnr)
  end, bufnr)
  id = ok and request_id or nil
  st.pending, st.client = id, client
  return ok
end

--- The part of `text` that accepting a 'word', a 'line' or (nil) everything takes.
function M.cut(text, kind)
  if kind == 'word' then
    return text:match('^%s*[%w_]+') or text:match('^%s*[^%w_%s]+') or text
  elseif kind == 'line' then
    return text:match('^[^\n]+') or text:match('^\n[^\n]*')
  end
  return text
end

--- Insert all of the suggestion, or its next 'word' or 'line'. Returns false when none is shown.
function M.accept(bufnr, kind)
  bufnr = bufnr or api.nvim_get_current_buf()
  local text = M.current(bufnr)
  if not text then
    return false
  end
  local part = M.cut(text, kind)
  local row, col = cursor(bufnr)
  local lines = vim.split(part, '\n', { plain = true })
  api.nvim_buf_set_text(bufnr, row, col, row, col, lines)
  api.nvim_win_set_cursor(0, { row + #lines, (#lines == 1 and col or 0) + #lines[#lines] })
  if part == text then
    M.dismiss(bufnr)
  else
    M.render(bufnr)
  end
  return true
end

--- Show the next (+1) or previous (-1) candidate; with none shown, ask for suggestions.
function M.cycle(bufnr, delta)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = state(bufnr)
  if not M.current(bufnr) then
    return M.request(bufnr, true)
  end
  st.index, st.cycled = st.index + delta, true
  return M.render(bufnr)
end

--- Set up the autocmds for one buffer. `auto()` says whether to request as the user types, and
--- `debounce()` after how many ms of quiet.
function M.attach(bufnr, auto, debounce)
  local group = api.nvim_create_augroup('diffill.ghost.' .. bufnr, { clear = true })
  local st = state(bufnr)
  st.timer = st.timer or vim.uv.new_timer()
  local function schedule_request()
    st.timer:stop()
    st.timer:start(debounce(), 0, vim.schedule_wrap(function()
      if api.nvim_buf_is_valid(bufnr) and api.nvim_get_mode().mode:sub(1, 1) == 'i' then
        M.request(bufnr, false)
      end
    end))
  end
  api.nvim_create_autocmd({ 'InsertEnter', 'TextChangedI', 'CursorMovedI' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      if M.render(bufnr) then
        cancel(st) -- still typing through the suggestion: nothing to ask
      else
        st.items = nil
        if auto() then
          schedule_request()
        end
      end
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function() M.dismiss(bufnr) end,
  })
end

function M.detach(bufnr)
  pcall(api.nvim_del_augroup_by_name, 'diffill.ghost.' .. bufnr)
  local st = states[bufnr]
  if st then
    M.dismiss(bufnr)
    if st.timer then
      st.timer:close()
    end
    states[bufnr] = nil
  end
end

return M
