// Bundles src/ into miniprogram_dist/index.js: one ES2017 CommonJS file, what WeChat DevTools'
// "构建 npm" copies. `--size` prints the minified and gzipped sizes instead of writing.
import { gzipSync } from "node:zlib";
import { type BuildOptions, build } from "esbuild";

/** The options the tests bundle with too, so they run what ships. */
export const bundleOptions: BuildOptions = {
  entryPoints: [new URL("src/index.ts", import.meta.url).pathname],
  bundle: true,
  format: "cjs",
  target: "es2017",
  platform: "neutral",
  legalComments: "none",
};

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes("--size")) {
    const out = await build({ ...bundleOptions, minify: true, write: false });
    const code = out.outputFiles![0]!.contents;
    console.log(`miniprogram_dist/index.js minified: ${code.length} bytes, gzipped: ${gzipSync(code).length} bytes`);
  } else {
    await build({ ...bundleOptions, outfile: new URL("miniprogram_dist/index.js", import.meta.url).pathname });
  }
}
