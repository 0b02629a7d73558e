/**
 * @module A tiny pure-Python wheel built locally (no network, no build tools: Python's zipfile), for tests of
 * package installs through PIP_FIND_LINKS.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";

export interface TestWheel {
  /** Distribution and import name, e.g. `sinas_testpkg`. */
  name: string;
  version: string;
  /** The package's `__init__.py`. */
  init: string;
}

export const TEST_WHEEL: TestWheel = {
  name: "sinas_testpkg",
  version: "1.0",
  init: 'def hello():\n    return "hi from wheel"\n',
};

const BUILD = String.raw`
import base64, hashlib, json, sys, zipfile
spec = json.loads(sys.argv[1])
name, version = spec["name"], spec["version"]
info = f"{name}-{version}.dist-info"
files = {
    f"{name}/__init__.py": spec["init"],
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: sinas-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def record(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest},{len(data)}"
lines = [f"{path},{record(text.encode())}" for path, text in files.items()] + [f"{info}/RECORD,,"]
files[f"{info}/RECORD"] = "\n".join(lines) + "\n"
with zipfile.ZipFile(spec["out"], "w", zipfile.ZIP_DEFLATED) as wheel:
    for path, text in files.items():
        wheel.writestr(path, text)
`;

/** Writes `<name>-<version>-py3-none-any.whl` into `dir` and returns its path. */
export function buildWheel(dir: string, wheel: TestWheel = TEST_WHEEL, python = "python3"): string {
  const out = join(dir, `${wheel.name}-${wheel.version}-py3-none-any.whl`);
  const result = spawnSync(python, ["-c", BUILD, JSON.stringify({ ...wheel, out })], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`building ${out} failed: ${result.stderr}`);
  return out;
}
