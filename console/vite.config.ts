// The operator console, built to console/dist/ (committed, so `npm start` serves it without a build).
import { defineConfig } from "vite";

export default defineConfig({
  root: import.meta.dirname,
  base: "/console/",
  // Preact's JSX through Vite's own transform: no Babel, no plugin.
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // Nothing inline, for the CSP's script-src 'self': no preload polyfill, no assets as data: URLs.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    // Built files are committed and checked fresh: no source maps to churn.
    sourcemap: false,
    reportCompressedSize: false,
  },
});
