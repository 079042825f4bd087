import { useEffect, useState } from "preact/hooks";
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
