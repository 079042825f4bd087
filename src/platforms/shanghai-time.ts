/** "yyyy-MM-dd HH:mm:ss" in Asia/Shanghai (UTC+8 all year, no daylight saving), as Alipay and the seeds write dates. */
export function shanghaiTimestamp(epochMs: number): string {
  return new Date(epochMs + 8 * 3600_000).toISOString().slice(0, 19).replace("T", " ");
}

/** The day "yyyy-MM-dd" in Asia/Shanghai, by which the service counts users per day. */
export function shanghaiDay(epochMs: number): string {
  return shanghaiTimestamp(epochMs).slice(0, 10);
}
