import { WECHAT_PATHS, type WechatPath } from "./protocol.js";

// What happens to requests on their way to the simulated WeChat: injected faults, and a count of
// calls per path so tests can see how often the service really went to WeChat.

export interface Fault {
  /** Wait this long before doing anything else. */
  delayMs?: number;
  /** Answer 200 with this errcode instead of the real answer. */
  errcode?: number;
  /** Answer this HTTP status with a plain-text body instead of the real answer. */
  status?: number;
  /** Do the real work, then destroy the socket without answering. */
  drop?: boolean;
}

export type FaultBook = ReturnType<typeof createFaultBook>;

export function createFaultBook() {
  const queues = new Map<WechatPath, { fault: Fault; remaining: number }[]>();
  return {
    add(path: WechatPath, fault: Fault, times: number): void {
      const queue = queues.get(path) ?? [];
      queue.push({ fault, remaining: times });
      queues.set(path, queue);
    },

    clear(): void {
      queues.clear();
    },

    /** The fault for the next request to `path`, if any; faults for one path apply in the order added. */
    take(path: WechatPath): Fault | undefined {
      const queue = queues.get(path);
      const head = queue?.[0];
      if (queue === undefined || head === undefined) return undefined;
      head.remaining -= 1;
      if (head.remaining === 0) queue.shift();
      return head.fault;
    },
  };
}

export type CallCounter = ReturnType<typeof createCallCounter>;

export function createCallCounter() {
  const counts = new Map<WechatPath, number>();
  return {
    count(path: WechatPath): void {
      counts.set(path, (counts.get(path) ?? 0) + 1);
    },

    /** Every WeChat path, zero included, so callers need no defaults. */
    snapshot(): Record<WechatPath, number> {
      return Object.fromEntries(WECHAT_PATHS.map((path) => [path, counts.get(path) ?? 0])) as Record<
        WechatPath,
        number
      >;
    },

    reset(): void {
      counts.clear();
    },
  };
}
