#!/usr/bin/env node
// Checks the relative links of the user documentation: every [text](target) and ![alt](target) in
// README.md, SECURITY.md and docs/**/*.md must name a file or directory that exists, and a #anchor
// must name a heading of the target markdown file (GitHub's heading ids). Links to http(s) and
// mailto are not fetched. Exits 1, listing every broken link, when any is.
//   node scripts/check-links.mjs [file.md …]
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

function markdownUnder(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return markdownUnder(path);
    return entry.name.endsWith(".md") ? [path] : [];
  });
}

/** The text outside fenced code blocks. */
function withoutFences(text) {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "");
}

/** The text outside fenced code blocks and inline code, where a link is a link. */
function prose(text) {
  return withoutFences(text).replace(/`[^`\n]*`/g, "``");
}

/** GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function headingIds(text) {
  const ids = new Set();
  const seen = new Map();
  for (const [, heading] of withoutFences(text).matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const base = heading
      .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
      .replace(/<[^>]+>/g, "")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M} _-]/gu, "")
      .replace(/ /g, "-");
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    ids.add(count === 0 ? base : `${base}-${count}`);
  }
  return ids;
}

const files =
  process.argv.length > 2
    ? process.argv.slice(2).map((file) => resolve(file))
    : [join(root, "README.md"), join(root, "SECURITY.md"), ...markdownUnder(join(root, "docs"))].filter((file) => existsSync(file));

const broken = [];
let checked = 0;
for (const file of files) {
  const text = readFileSync(file, "utf8");
  for (const [, target] of prose(text).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
    checked++;
    const [path, anchor] = target.split("#", 2);
    const resolved = path ? resolve(dirname(file), decodeURIComponent(path)) : file;
    const where = `${relative(root, file)}: (${target})`;
    if (!existsSync(resolved)) {
      broken.push(`${where}: no such file ${relative(root, resolved)}`);
      continue;
    }
    if (anchor === undefined) continue;
    if (statSync(resolved).isDirectory() || !resolved.endsWith(".md")) {
      broken.push(`${where}: an anchor into something that is not a markdown file`);
      continue;
    }
    if (!headingIds(readFileSync(resolved, "utf8")).has(decodeURIComponent(anchor).toLowerCase())) {
      broken.push(`${where}: no heading #${anchor} in ${relative(root, resolved)}`);
    }
  }
}

for (const line of broken) console.error(line);
console.log(`${files.length} files, ${checked} relative links, ${broken.length} broken`);
process.exit(broken.length > 0 ? 1 : 0);
