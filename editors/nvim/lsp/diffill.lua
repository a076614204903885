-- Diffill language server config for `vim.lsp.config` / `vim.lsp.enable` (Neovim 0.11+).
--
--   vim.lsp.enable('diffill')              -- completion, code actions, status
--   require('diffill').setup({ ... })      -- adds ghost text, :Diffill, statusline
--
-- One server serves every buffer (the model is loaded once), whatever the root.
return {
  cmd = { 'diffill', 'serve' },
  root_markers = { '.git' },
  reuse_client = function(client, config)
    return client.name == config.name
  end,
  handlers = {
    ['diffill/status'] = function(_, params, ctx)
      require('diffill.status').update(params, ctx and ctx.client_id)
    end,
  },
}
