import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { Api } from './api/client';
import { getToken } from './api/http';
import { parseRoute } from './lib/route';
import './styles.css';

// A deep link into a session: ask for its detail now, while React starts (it is the first thing needed).
const first = parseRoute(window.location.hash);
const token = getToken();
if (first.page === 'session' && token) new Api(token).prefetchSession(first.session);

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
