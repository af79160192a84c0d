// llama_cpp_greedy.mjs -- llama.cpp's own greedy continuation of token ids, through
// node-llama-cpp's prebuilt library (no build, no download, CPU only).
//
//   node tests/js/llama_cpp_greedy.mjs MODEL.gguf N ID,ID,...
//   node tests/js/llama_cpp_greedy.mjs MODEL.gguf --tokenize TEXTS.json
//
// Prints {"ids": [...]} : the N tokens llama.cpp picks (temperature 0 = argmax) after
// evaluating the prompt ids, with no BOS added; or, with --tokenize, {"tokens": [[...], ...]}:
// llama.cpp's ids of each text of the JSON array (no BOS, special tokens as plain text). Exit 3 (and a message) when node-llama-cpp or
// its prebuilt binary for this machine is absent, so that callers can skip.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "package.json"));

const [modelPath, nArg, idsArg] = process.argv.slice(2);
if (!modelPath || !nArg || !idsArg) {
    console.error("usage: node llama_cpp_greedy.mjs MODEL.gguf N ID,ID,...");
    process.exit(2);
}
const n = parseInt(nArg, 10);
const prompt = idsArg.split(",").map((s) => parseInt(s, 10));

let nlc;
try {
    nlc = await import(require.resolve("node-llama-cpp"));
} catch (e) {
    console.error("llama_cpp_greedy: node-llama-cpp is not installed: " + e.message);
    process.exit(3);
}
let llama;
try {
    llama = await nlc.getLlama({
        gpu: false, build: "never", usePrebuiltBinaries: true, progressLogs: false,
        logLevel: nlc.LlamaLogLevel.error, vramPadding: 0,
    });
} catch (e) {
    console.error("llama_cpp_greedy: no prebuilt llama.cpp binary for this machine: " + e.message);
    process.exit(3);
}
const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
if (nArg === "--tokenize") {
    const fs = await import("node:fs");
    const texts = JSON.parse(fs.readFileSync(idsArg, "utf8"));
    console.log(JSON.stringify({ tokens: texts.map((t) => Array.from(model.tokenize(t, false))) }));
    await model.dispose();
    await llama.dispose();
    process.exit(0);
}
const context = await model.createContext({
    contextSize: Math.max(64, prompt.length + n + 8), batchSize: 512, threads: 2, sequences: 1,
});
const seq = context.getSequence();
const out = [];
for await (const tok of seq.evaluate(prompt, { temperature: 0, topK: 1, topP: 1, minP: 0, repeatPenalty: false })) {
    out.push(tok);
    if (out.length >= n) break;
}
console.log(JSON.stringify({ ids: out, llama_cpp: llama.llamaCppRelease ?? null, build: llama.buildType ?? null }));
await context.dispose();
await model.dispose();
await llama.dispose();
