// MongoDB behaviour a MongoDB-compatible server may lack. CI runs the MongoDB suites on FerretDB 1.x
// (see .ci/ferretdb.sh); tests that need what it lacks are skipped there, and say so. On MongoDB
// nothing is skipped.
import { MongoClient } from "mongodb";

export type Gap = "unique-multikey" | "atomic-conditional-writes" | "push-slice" | "nested-arrays" | "ttl" | "set-on-insert-null" | "change-streams";

/** What FerretDB 1.x (the CI stand-in, see .ci/ferretdb.sh) does differently from MongoDB. */
const FERRETDB_1_GAPS: Record<Gap, string> = {
  "unique-multikey": "a unique index on an array field compares whole arrays, not their elements",
  "atomic-conditional-writes": "a filtered update reads, then writes by _id alone, so parallel compare-and-sets can all win",
  "push-slice": "$push ignores $slice",
  "nested-arrays": "arrays inside arrays are rejected",
  ttl: "TTL indexes are not implemented",
  "set-on-insert-null": "an upsert's $setOnInsert leaves out fields whose value is null",
  "change-streams": "there are no change streams: the revocation feed polls",
};

export async function gapsOf(serverUri: string, suite: string): Promise<Set<Gap>> {
  const client = new MongoClient(serverUri, { serverSelectionTimeoutMS: 5_000 });
  try {
    const info = await client.db("admin").command({ buildInfo: 1 });
    const ferretdb: unknown = info.ferretdbVersion;
    if (typeof ferretdb !== "string" || !ferretdb.startsWith("v1.")) return new Set();
    process.stderr.write(
      `${suite}: FerretDB ${ferretdb} lacks MongoDB behaviour; tests that need it are skipped:\n` +
        Object.entries(FERRETDB_1_GAPS)
          .map(([gap, what]) => `  ${gap}: ${what}\n`)
          .join(""),
    );
    return new Set(Object.keys(FERRETDB_1_GAPS) as Gap[]);
  } finally {
    await client.close();
  }
}
