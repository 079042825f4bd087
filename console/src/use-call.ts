import { useEffect, useRef, useState } from "preact/hooks";
import { reasonOf } from "./api.js";

/** An AdminService read, redone when `deps` change: its answer, or the reason it failed. */
export function useCall<T>(call: () => Promise<T>, deps: unknown[]): { data?: T; error?: string; reload: () => void } {
  const [state, setState] = useState<{ data?: T; error?: string }>({});
  const [round, setRound] = useState(0);
  useEffect(() => {
    let current = true;
    call().then(
      (data) => current && setState({ data }),
      (e) => current && setState({ error: reasonOf(e) }),
    );
    return () => {
      current = false;
    };
  }, [...deps, round]);
  return { ...state, reload: () => setRound((r) => r + 1) };
}

/** One page of a paged AdminService list. */
export interface Page<T> {
  items: T[];
  next: string;
}

interface Pages<T> extends Page<T> {
  error?: string;
  /** Whether the first page for the current `deps` has answered. */
  answered: boolean;
}

/**
 * A paged AdminService list: its first page again whenever `deps` change, `more()` appending the
 * next one, always with the `fetchPage` of the latest render (so a page token is never sent with
 * other filters than the ones it came from). `fetchPage` null: nothing to ask, an empty list.
 */
export function usePages<T>(fetchPage: ((pageToken: string) => Promise<Page<T>>) | null, deps: unknown[]): Pages<T> & { more: () => void } {
  const [state, setState] = useState<Pages<T>>({ items: [], next: "", answered: false });
  // Answers for earlier deps, arriving late, are dropped.
  const round = useRef(0);
  const load = (pageToken: string) => {
    const mine = round.current;
    if (!fetchPage) return setState({ items: [], next: "", answered: false });
    fetchPage(pageToken).then(
      (page) => round.current === mine && setState((s) => ({ items: pageToken ? [...s.items, ...page.items] : page.items, next: page.next, answered: true })),
      (e) => round.current === mine && setState({ items: [], next: "", error: reasonOf(e), answered: true }),
    );
  };
  useEffect(() => {
    round.current += 1;
    load("");
  }, deps);
  return { ...state, more: () => load(state.next) };
}
