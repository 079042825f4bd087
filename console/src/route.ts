// Hash routing (#/users/…): the service serves one index.html, and no path under /console/ is a page.
export interface Route {
  path: string[];
  params: URLSearchParams;
}

export function currentRoute(): Route {
  const [path = "", query = ""] = location.hash.replace(/^#\/?/, "").split("?", 2);
  return { path: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

export const go = (to: string) => {
  location.hash = `#${to}`;
};
