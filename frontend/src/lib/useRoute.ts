import { useCallback, useEffect, useState } from 'react';
import { formatRoute, parseRoute, type Route } from './route';

/** The route held in the URL hash; navigate() pushes (or replaces) a history entry. */
export function useRoute(): [Route, (r: Route, replace?: boolean) => void] {
  const [route, setRoute] = useState<Route>(() => parseRoute(window.location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', on);
    window.addEventListener('popstate', on);
    return () => {
      window.removeEventListener('hashchange', on);
      window.removeEventListener('popstate', on);
    };
  }, []);
  const navigate = useCallback((r: Route, replace = false) => {
    const h = formatRoute(r);
    if (h !== window.location.hash) {
      if (replace) window.history.replaceState(null, '', h);
      else window.history.pushState(null, '', h);
    }
    setRoute(parseRoute(h));
  }, []);
  return [route, navigate];
}
