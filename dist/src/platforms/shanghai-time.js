/** "yyyy-MM-dd HH:mm:ss" in Asia/Shanghai (UTC+8 all year, no daylight saving), as Alipay and the seeds write dates. */
export function shanghaiTimestamp(epochMs) {
    return new Date(epochMs + 8 * 3600_000).toISOString().slice(0, 19).replace("T", " ");
}
