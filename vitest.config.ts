import { configDefaults, defineConfig } from "vitest/config";

// One `npm test` for the workspace: the service's own suite at the root (vitest's defaults, as
// before there was a config) and each package under packages/ as a project of its own.
export default defineConfig({
  test: {
    projects: [
      // The packages are their own projects; dist/ holds no tests but is compiled code, never a source of them.
      { extends: true, test: { name: "service", exclude: [...configDefaults.exclude, "packages/**", "dist/**"] } },
      // A folder each: packages/README.md is not a project.
      "packages/*",
      "!packages/*.md",
    ],
  },
});
