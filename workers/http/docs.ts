/**
 * @module Interactive API docs (Swagger UI) rendered offline.
 *
 * Swagger UI's script and stylesheet are served as static assets from /docs-assets/ (copied from
 * swagger-ui-dist by scripts/copy-docs-assets.mjs), because no CDN is reachable where the stack runs.
 */
import { html, raw } from "hono/html";

export function renderDocsPage(options: { title: string; specUrl: string }) {
  return html`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${options.title}</title>
    <link rel="stylesheet" href="/docs-assets/swagger-ui.css" />
    <link rel="icon" type="image/png" href="/docs-assets/favicon-32x32.png" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs-assets/swagger-ui-bundle.js"></script>
    <script>
      window.ui = SwaggerUIBundle({ url: ${raw(JSON.stringify(options.specUrl))}, dom_id: "#swagger-ui", deepLinking: true });
    </script>
  </body>
</html>`;
}
