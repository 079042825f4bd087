// The console's CSV export: quoted cells, and no cell a spreadsheet would run as a formula.
import { describe, expect, it } from "vitest";
import { csvCell, toCsv } from "../../console/src/csv.js";

describe("csvCell", () => {
  it.each([
    ['=HYPERLINK("http://evil")', `"'=HYPERLINK(""http://evil"")"`],
    ["+1+2", `"'+1+2"`],
    ["-2+3", `"'-2+3"`],
    ["@SUM(A1)", `"'@SUM(A1)"`],
    ["\t=1", `"'\t=1"`],
    ["\r=1", `"'\r=1"`],
    ["小明", `"小明"`],
    ["a,b\nc", `"a,b\nc"`],
    ["", `""`],
    ["1=1", `"1=1"`],
  ])("%j → %s", (value, cell) => {
    expect(csvCell(value)).toBe(cell);
  });
});

it("joins cells with commas and rows with CRLF", () => {
  expect(
    toCsv([
      ["id", "nickname"],
      ["1", "=x"],
    ]),
  ).toBe(`"id","nickname"\r\n"1","'=x"\r\n`);
});
