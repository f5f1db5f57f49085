// The VS Code client: starts `referral lsp` over stdio for .rule files.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("referral");
  const args = ["lsp"];
  const records = config.get("server.records", "");
  if (records) {
    args.push("--records", records);
  }
  const serverOptions = {
    command: config.get("server.command", "referral"),
    args,
    transport: TransportKind.stdio,
  };
  const clientOptions = {
    documentSelector: [{ scheme: "file", language: "referral-rule" }],
  };
  client = new LanguageClient("referral", "Referral rules", serverOptions, clientOptions);
  client.start();
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
