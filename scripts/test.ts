/**
 * @module `npm test`: the three suites in order (workerd unit tests, Node tests, black-box integration
 * tests through `wrangler dev`), then one summary line `N passed, N failed`.
 *
 * Integration runs on embedded defaults, or against real servers when TEST_DATABASE_URL / TEST_REDIS_URL
 * are set. Extra arguments are passed to every vitest run (e.g. a file filter).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SUITES = [
  { name: "unit (workerd)", config: "vitest.unit.config.ts" },
  { name: "node", config: "vitest.node.config.ts" },
  { name: "integration (wrangler dev)", config: "vitest.integration.config.ts" },
] as const;

interface VitestJsonReport {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTotalTestSuites: number;
  numFailedTestSuites: number;
}

const reportDir = mkdtempSync(join(tmpdir(), "sinas-test-report-"));
const extraArgs = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
let broken = false;

for (const suite of SUITES) {
  console.log(`\n=== ${suite.name} ===`);
  const outputFile = join(reportDir, `${suite.config}.json`);
  const run = spawnSync(
    process.execPath,
    [
      "node_modules/vitest/vitest.mjs",
      "run",
      "--config",
      suite.config,
      "--reporter=default",
      "--reporter=json",
      `--outputFile.json=${outputFile}`,
      "--passWithNoTests",
      ...extraArgs,
    ],
    { stdio: "inherit" },
  );
  try {
    const report = JSON.parse(readFileSync(outputFile, "utf8")) as VitestJsonReport;
    passed += report.numPassedTests;
    failed += report.numFailedTests;
    skipped += report.numPendingTests;
    if (run.status !== 0 && report.numFailedTests === 0) broken = true;
  } catch {
    broken = true;
  }
  if (run.status !== 0) broken = true;
}
rmSync(reportDir, { recursive: true, force: true });

console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(broken || failed > 0 ? 1 : 0);
