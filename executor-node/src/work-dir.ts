/**
 * @module The executor's scratch folder: `<tmp>/sinas-executor-<pid>-XXXXXX`, holding every sandbox's socket
 * folder and the staged runtime. Removed on shutdown; folders left by executors that died (their pid is
 * gone) are removed at start-up, so a crash leaves nothing behind for long.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const PREFIX = "sinas-executor-";

export async function createWorkDir(log: (line: string) => void): Promise<string> {
  removeStaleWorkDirs(log);
  const dir = mkdtempSync(join(tmpdir(), `${PREFIX}${process.pid}-`));
  // Sandboxes running as other uids must traverse it to reach their own socket folder; they cannot list it.
  await chmod(dir, 0o711);
  return dir;
}

export function removeWorkDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

function removeStaleWorkDirs(log: (line: string) => void): void {
  let entries: string[];
  try {
    entries = readdirSync(tmpdir());
  } catch {
    return;
  }
  for (const name of entries) {
    const pid = Number(new RegExp(`^${PREFIX}(\\d+)-`).exec(name)?.[1]);
    if (!pid || pid === process.pid || isAlive(pid)) continue;
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
    log(`removed ${name}, left by an executor that is gone`);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
