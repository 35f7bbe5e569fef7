// Hugging Face's tokenizer (npm `tokenizers`, the Rust library's Node binding) on the same files as
// `rondo data tokenize --json`: one encode per file, only the encoding timed, and the same FNV-1a
// digest of the ids, so bench/tokenizer_bench.sh can say both speed and sameness.
// Usage: node bench/tokenizer_reference.js TOKENIZER_JSON FILE...
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

(async () => {
  const [file, ...inputs] = process.argv.slice(2);
  const t0 = process.hrtime.bigint();
  const tok = Tokenizer.fromFile(file);
  const loadSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  let bytes = 0, tokens = 0, seconds = 0;
  const ids = [];
  for (const input of inputs.sort()) {
    const text = fs.readFileSync(input, 'utf8');
    const start = process.hrtime.bigint();
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    seconds += Number(process.hrtime.bigint() - start) / 1e9;
    const got = enc.getIds();
    bytes += fs.statSync(input).size;
    tokens += got.length;
    ids.push(got);
  }
  const prime = 0x100000001b3n;
  let h = 0xcbf29ce484222325n;
  for (const part of ids) for (const id of part) h = BigInt.asUintN(64, (h ^ BigInt(id)) * prime);
  console.log(JSON.stringify({
    tool: `tokenizers ${require('tokenizers/package.json').version}`, files: inputs.length, bytes, tokens,
    encode_seconds: seconds, mb_per_s: bytes / 1e6 / seconds, load_seconds: loadSeconds,
    ids_fnv1a64: h.toString(16).padStart(16, '0'),
  }));
})();
