import { availableParallelism } from "node:os";
import { configDefaults, defineConfig } from "vitest/config";

// One `npm test` for the workspace: the service's own suite at the root (vitest's defaults, as
// before there was a config) and each package under packages/ as a project of its own.
export default defineConfig({
  test: {
    // A worker per core: vitest's default leaves one core to itself, and on CI's two that halves a
    // suite whose files mostly wait on their own servers (115 s to 64 s, measured).
    maxWorkers: availableParallelism(),
    projects: [
      // The packages are their own projects; dist/ holds no tests but is compiled code, never a source of them.
      { extends: true, test: { name: "service", exclude: [...configDefaults.exclude, "packages/**", "dist/**"] } },
      // A folder each: packages/README.md is not a project.
      "packages/*",
      "!packages/*.md",
    ],
  },
});
