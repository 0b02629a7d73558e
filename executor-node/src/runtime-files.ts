/**
 * @module Where the Python runtime lives on the executor's host (executor-node/runtime/).
 */
import { fileURLToPath } from "node:url";

/** Host folder holding `sinas_runtime.py`. */
export const RUNTIME_DIR = fileURLToPath(new URL("../runtime/", import.meta.url)).replace(/\/$/, "");
export const RUNTIME_SCRIPT = "sinas_runtime.py";
