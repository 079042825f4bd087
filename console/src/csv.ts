// CSV for a spreadsheet, guarded against formula injection (OWASP "CSV Injection"): a cell that
// begins with = + - @, a tab or a carriage return gets a leading ', and every cell is quoted.
const FORMULA_START = /^[=+\-@\t\r]/;

export function csvCell(value: string): string {
  const guarded = FORMULA_START.test(value) ? `'${value}` : value;
  return `"${guarded.replaceAll('"', '""')}"`;
}

export function toCsv(rows: string[][]): string {
  return `${rows.map((row) => row.map(csvCell).join(",")).join("\r\n")}\r\n`;
}
