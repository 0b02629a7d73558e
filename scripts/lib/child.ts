/**
 * @module Child processes of the local stack: spawned in their own process group (so wrangler's workerd
 * and esbuild die with it), their output kept in a ring buffer, and an unexpected exit reported with
 * the last lines instead of passing silently. Each stops by itself when the launcher dies (its stdin closes).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

export interface ChildOptions {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Called with every output line (already prefixed by nothing); default: ignore. */
  onLine?: (name: string, line: string) => void;
  /** Called when the process exits while the stack did not ask it to. */
  onUnexpectedExit?: (child: ManagedChild, code: number | null, signal: NodeJS.Signals | null) => void;
}

const TAIL_LINES = 40;
/** Set for every child: it stops when its stdin (a pipe from the launcher) closes. */
export const STOP_WITH_LAUNCHER = "SINAS_STOP_WITH_LAUNCHER";

export class ManagedChild {
  readonly name: string;
  readonly process: ChildProcess;
  readonly exited: Promise<void>;
  #tail: string[] = [];
  #stopping = false;
  #exitCode: number | null | undefined;

  constructor(options: ChildOptions) {
    this.name = options.name;
    this.process = spawn(options.command, options.args, {
      cwd: options.cwd,
      // The child stops when this pipe closes: the launcher died, even by SIGKILL, which it cannot clean up
      // after. A detached child would otherwise live on holding its port (and PGlite its data folder).
      env: { ...(options.env ?? process.env), [STOP_WITH_LAUNCHER]: "true" },
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    for (const stream of [this.process.stdout, this.process.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on("line", (line) => {
        this.#tail.push(line);
        if (this.#tail.length > TAIL_LINES) this.#tail.shift();
        options.onLine?.(this.name, line);
      });
    }
    this.exited = new Promise((resolve) => {
      this.process.once("exit", (code, signal) => {
        this.#exitCode = code;
        if (!this.#stopping) options.onUnexpectedExit?.(this, code, signal);
        resolve();
      });
      this.process.once("error", (error) => {
        this.#tail.push(`failed to start: ${error.message}`);
        this.#exitCode = null;
        if (!this.#stopping) options.onUnexpectedExit?.(this, null, null);
        resolve();
      });
    });
  }

  get running(): boolean {
    return this.#exitCode === undefined;
  }

  /** The last lines the process printed, oldest first. */
  tail(): string[] {
    return [...this.#tail];
  }

  #signalGroup(signal: NodeJS.Signals): void {
    const pid = this.process.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is gone already.
    }
  }

  /** SIGTERM to the whole process group, SIGKILL after `graceMs`. Resolves when the process has exited. */
  async stop(graceMs = 5_000): Promise<void> {
    this.#stopping = true;
    if (!this.running) {
      this.#signalGroup("SIGKILL");
      return;
    }
    this.#signalGroup("SIGTERM");
    const timer = setTimeout(() => this.#signalGroup("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
    // Grandchildren that ignored SIGTERM (workerd sometimes does) must not outlive the stack.
    this.#signalGroup("SIGKILL");
  }
}
