import { useState, type FormEvent } from 'react';
import { Api } from '../api/client';
import { ApiError, describeError } from '../api/http';

/** Paste an API key; it is checked against the API (GET /hosts needs the read role) before it is kept. */
export function SignIn({ onSignedIn, notice }: { onSignedIn: (token: string) => void; notice?: string | null }) {
  const [key, setKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const token = key.trim();
    if (!token) {
      setError('Paste an API key first.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await new Api(token).hosts();
      onSignedIn(token);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 403 ? `${describeError(err)} Use a key with the read (or admin) role.` : describeError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="signin">
      <form onSubmit={submit} className="card">
        <h1>GPU Flight</h1>
        <p className="muted">Paste an API key (the read role is enough). It is kept for this browser session only.</p>
        {notice && <div className="state error" role="alert">{notice}</div>}
        <label htmlFor="apikey">API key</label>
        <input
          id="apikey"
          name="apikey"
          type="password"
          autoComplete="off"
          value={key}
          onChange={(e) => setKey(e.target.value)}
          placeholder="gpufl_…"
          autoFocus
        />
        <button type="submit" disabled={busy}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        {error && (
          <div className="state error" role="alert" data-testid="signin-error">
            {error}
          </div>
        )}
      </form>
    </div>
  );
}
