// tok_ref.mjs -- the reference side of tests/py/test_tokenizer_hf.py: Hugging Face's
// tokenizer algorithm as transformers.js implements it (@lenml/tokenizers, its
// tokenizers-only fork), on a real tokenizer.json.
//
//   node tests/js/tok_ref.mjs TOKENIZER_JSON [CONFIG_JSON] < strings.jsonl > ids.jsonl
//
// Each stdin line is a JSON string; each stdout line the JSON array of its ids, encoded
// with add_special_tokens: false (special tokens written in the text are still matched).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import readline from "node:readline";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "package.json"));
const { TokenizerLoader } = require("@lenml/tokenizers");

const [jsonPath, cfgPath] = process.argv.slice(2);
const tokenizerJSON = JSON.parse(readFileSync(jsonPath, "utf8"));
const tokenizerConfig = cfgPath ? JSON.parse(readFileSync(cfgPath, "utf8")) : {};
const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
const out = [];
for await (const line of rl) {
  if (!line) continue;
  const s = JSON.parse(line);
  out.push(JSON.stringify(tok.encode(s, { add_special_tokens: false })));
  if (out.length >= 512) {
    process.stdout.write(out.join("\n") + "\n");
    out.length = 0;
  }
}
if (out.length) process.stdout.write(out.join("\n") + "\n");
