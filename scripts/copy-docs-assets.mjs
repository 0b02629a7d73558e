// Copies the Swagger UI files the /docs page needs from swagger-ui-dist into public/, which the Worker
// serves as static assets: the docs page must render offline, so nothing may come from a CDN.
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const target = join(root, "public", "docs-assets");
let source;
try {
  source = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
} catch {
  // Production installs without devDependencies skip this; the deploy script runs it after npm ci.
  process.exit(0);
}
mkdirSync(target, { recursive: true });
for (const file of ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"]) {
  const from = join(source, file);
  if (existsSync(from)) copyFileSync(from, join(target, file));
}
