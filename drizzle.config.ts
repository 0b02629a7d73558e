import { defineConfig } from "drizzle-kit";

// `npm run db:generate` turns the one schema module into SQL migrations under migrations/.
export default defineConfig({
  dialect: "postgresql",
  schema: "./workers/db/schema.ts",
  out: "./migrations",
});
