/** @module Placeholder: filled by the agents & chat work (issue 6). */
import { createRouter } from "./router";

export const chatTurnsRouter = createRouter();
