import { useEffect, useMemo, useState } from 'react';
import { Api } from './api/client';
import { getToken, onAuthFailure, setToken } from './api/http';
import { Archive } from './components/Archive';
import { Captures } from './components/Captures';
import { Compare } from './components/Compare';
import { Dashboard } from './components/Dashboard';
import { SessionSelector } from './components/SessionSelector';
import { SignIn } from './components/SignIn';
import { useRoute } from './lib/useRoute';

export function App() {
  const [token, setTok] = useState<string | null>(() => getToken());
  const [notice, setNotice] = useState<string | null>(null);
  const [route, navigate] = useRoute();
  const api = useMemo(() => new Api(token), [token]);

  useEffect(
    () =>
      onAuthFailure(() => {
        // Only a key that was signed in can have been revoked: a wrong key typed at sign-in already gets the
        // sign-in form's own error, and a second box about revocation would be wrong and confusing.
        if (getToken() === null) return;
        setToken(null);
        setTok(null);
        setNotice('Your API key was rejected (401): it may have been revoked. Sign in again.');
      }),
    [],
  );

  if (!token) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={(t) => {
          setToken(t);
          setNotice(null);
          setTok(t);
        }}
      />
    );
  }

  return (
    <div className="app">
      <header className="topbar">
        <a className="brand" href="#/">
          GPU Flight
        </a>
        {route.page !== 'sessions' && (
          <a href="#/" className="crumb">
            ← Sessions
          </a>
        )}
        <span className="spacer" />
        <a href="#/captures" className="crumb">
          Captures
        </a>
        <a href="#/archive" className="crumb">
          Archive
        </a>
        <button
          className="link"
          onClick={() => {
            setToken(null);
            setTok(null);
            setNotice(null);
          }}
        >
          Sign out
        </button>
      </header>
      <main>
        {route.page === 'sessions' && <SessionSelector api={api} route={route} navigate={navigate} />}
        {route.page === 'session' && <Dashboard key={route.session} api={api} route={route} navigate={navigate} />}
        {route.page === 'compare' && <Compare api={api} route={route} navigate={navigate} />}
        {route.page === 'archive' && <Archive api={api} navigate={navigate} />}
        {route.page === 'captures' && <Captures token={token} navigate={navigate} />}
      </main>
    </div>
  );
}
