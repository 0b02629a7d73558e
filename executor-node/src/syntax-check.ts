/**
 * @module `POST /v1/syntax-check`: parses Python source with `ast.parse` in a short-lived child process.
 * Parsing executes nothing, so no sandbox is needed; the child still gets a clean environment, a 5 s
 * timeout, a 256 MiB address-space cap (prlimit, when present), and drops to an unprivileged uid when the
 * executor runs as root.
 */
import { spawn } from "node:child_process";
import { findPrlimit } from "./sandbox/limits";

export const MAX_SYNTAX_CHECK_BYTES = 256 * 1024;
const TIMEOUT_MS = 5000;
const NOBODY = 65534;

const SCRIPT = `
import ast, json, sys
source = sys.stdin.buffer.read().decode("utf-8", "replace")
try:
    ast.parse(source)
except SyntaxError as exc:
    print(json.dumps({"line": exc.lineno, "msg": exc.msg}))
except (ValueError, RecursionError, MemoryError) as exc:
    print(json.dumps({"line": None, "msg": f"{type(exc).__name__}: {exc}"}))
else:
    print(json.dumps({"ok": True}))
`;

export type SyntaxCheckResult = { ok: true } | { ok: false; error: string };

export function checkSyntax(pythonBin: string, code: string): Promise<SyntaxCheckResult> {
  const bytes = Buffer.byteLength(code);
  if (bytes > MAX_SYNTAX_CHECK_BYTES) {
    return Promise.resolve({
      ok: false,
      error: `code is too large (${bytes} bytes, at most ${MAX_SYNTAX_CHECK_BYTES})`,
    });
  }
  const prlimit = findPrlimit();
  const python = [pythonBin, "-I", "-c", SCRIPT];
  const command = prlimit ? [prlimit, `--as=${256 * 1024 * 1024}`, "--core=0", "--", ...python] : python;
  const root = process.getuid?.() === 0;
  return new Promise((resolve, reject) => {
    const child = spawn(command[0] as string, command.slice(1), {
      env: { PATH: "/usr/local/bin:/usr/bin:/bin", LANG: "C.UTF-8" },
      cwd: "/",
      uid: root ? NOBODY : undefined,
      gid: root ? NOBODY : undefined,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      if (stdout.length < 65_536) stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve({ ok: false, error: "the syntax check timed out" });
    }, TIMEOUT_MS);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${pythonBin}: ${error.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const line = stdout.trim().split("\n").pop() ?? "";
      const parsed = parseReport(line);
      if (parsed?.ok) resolve({ ok: true });
      else if (parsed && typeof parsed.msg === "string") {
        resolve({ ok: false, error: parsed.line ? `line ${parsed.line}: ${parsed.msg}` : parsed.msg });
      } else if (signal === "SIGKILL") {
        resolve({ ok: false, error: "the syntax check timed out" });
      } else {
        // The parser crashed (deep nesting can overflow its stack): the code is not acceptable either way.
        resolve({
          ok: false,
          error: `the code could not be parsed (exit ${code ?? signal}): ${stderr.trim().slice(-300)}`,
        });
      }
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(code);
  });
}

interface ParserReport {
  ok?: boolean;
  line?: number | null;
  msg?: string;
}

function parseReport(line: string): ParserReport | null {
  try {
    const value: unknown = JSON.parse(line);
    return value && typeof value === "object" ? (value as ParserReport) : null;
  } catch {
    return null;
  }
}
