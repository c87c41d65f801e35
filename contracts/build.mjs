// Reproducible build of the AudiFi contracts.
//   cd contracts && npm ci && node build.mjs
// Compiles contracts/src/*.sol with the exact solc pinned in package.json (solc-js, standard-JSON
// API), resolving imports from node_modules, and writes one artifact per contract to
// ../src/audifi_adapters/chain/artifacts/<Name>.json = {contractName, abi, bytecode, deployedBytecode}.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SRC_DIR = path.join(HERE, "src");
const NODE_MODULES = path.join(HERE, "node_modules");
const OUT_DIR = path.resolve(HERE, "..", "src", "audifi_adapters", "chain", "artifacts");

const EXPECTED_SOLC = JSON.parse(fs.readFileSync(path.join(HERE, "package.json"), "utf8"))
  .dependencies.solc;

// The contracts whose artifacts the Python side uses (one file per contract, same name).
const sourceFiles = fs
  .readdirSync(SRC_DIR)
  .filter((f) => f.endsWith(".sol"))
  .sort();

const sources = {};
for (const f of sourceFiles) {
  sources[`src/${f}`] = { content: fs.readFileSync(path.join(SRC_DIR, f), "utf8") };
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    evmVersion: "cancun",
    optimizer: { enabled: true, runs: 200 },
    metadata: { bytecodeHash: "none", appendCBOR: true },
    outputSelection: {
      "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
    },
  },
};

function findImports(importPath) {
  const candidates = [path.join(HERE, importPath), path.join(NODE_MODULES, importPath)];
  for (const p of candidates) {
    const resolved = path.resolve(p);
    // Never read outside the contracts folder.
    if (!resolved.startsWith(HERE + path.sep)) continue;
    if (fs.existsSync(resolved)) return { contents: fs.readFileSync(resolved, "utf8") };
  }
  return { error: `import not found: ${importPath}` };
}

const version = solc.version();
if (!version.startsWith(EXPECTED_SOLC + "+")) {
  console.error(`solc ${version} does not match the pinned ${EXPECTED_SOLC}; run npm ci`);
  process.exit(1);
}

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
let failed = false;
for (const err of output.errors ?? []) {
  const msg = err.formattedMessage ?? err.message;
  if (err.severity === "error") {
    failed = true;
    console.error(msg);
  } else {
    console.warn(msg);
  }
}
if (failed) process.exit(1);

const EIP170 = 24576;
fs.mkdirSync(OUT_DIR, { recursive: true });
const written = new Set();
for (const f of sourceFiles) {
  const name = path.basename(f, ".sol");
  const contract = output.contracts[`src/${f}`]?.[name];
  if (!contract) {
    console.error(`src/${f} does not define a contract named ${name}`);
    process.exit(1);
  }
  const bytecode = contract.evm.bytecode.object;
  const deployed = contract.evm.deployedBytecode.object;
  if (!bytecode) continue; // abstract contract or interface: no artifact
  const runtimeSize = deployed.length / 2;
  if (runtimeSize > EIP170) {
    console.error(`${name}: runtime code ${runtimeSize} bytes exceeds EIP-170 (${EIP170})`);
    process.exit(1);
  }
  const artifact = {
    contractName: name,
    abi: contract.abi,
    bytecode: "0x" + bytecode,
    deployedBytecode: "0x" + deployed,
  };
  fs.writeFileSync(path.join(OUT_DIR, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
  written.add(`${name}.json`);
  console.log(`${name.padEnd(16)} runtime ${String(runtimeSize).padStart(6)} bytes`);
}

// Remove artifacts of contracts that no longer exist, so the folder mirrors the sources.
for (const f of fs.readdirSync(OUT_DIR)) {
  if (f.endsWith(".json") && !written.has(f)) fs.rmSync(path.join(OUT_DIR, f));
}
console.log(`solc ${version}: ${written.size} artifacts in ${path.relative(process.cwd(), OUT_DIR)}`);
