import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Api } from '../api/client';
// The backend's real answer for examples/captures/memcpy_heavy (see the file's _comment).
import memcpy from '../lib/fixtures/insights_memcpy_heavy.json';
import { BADGE_AUTO_MAX_KERNELS, InsightBadge } from './SessionSelector';

afterEach(() => {
  vi.unstubAllGlobals();
  cleanup();
});

function answering() {
  const body = JSON.stringify(memcpy);
  const fetch = vi.fn(async (_url: RequestInfo | URL, _init?: RequestInit) => new Response(body, { status: 200, headers: { 'Content-Type': 'application/json' } }));
  vi.stubGlobal('fetch', fetch);
  return fetch;
}

describe('InsightBadge', () => {
  it('asks for a listed session\'s insights at once up to the limit', async () => {
    const fetch = answering();
    render(<InsightBadge api={new Api('t')} id={memcpy.session_id} kernels={BADGE_AUTO_MAX_KERNELS} />);
    await waitFor(() => expect(screen.getByTestId('insight-badge')).toBeTruthy());
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(String(fetch.mock.calls[0][0])).toContain(`/sessions/${memcpy.session_id}/insights`);
  });

  it('asks only on a click above it, and says why, without opening the session', async () => {
    const fetch = answering();
    const row = vi.fn();
    render(
      <div onClick={row}>
        <InsightBadge api={new Api('t')} id={memcpy.session_id} kernels={BADGE_AUTO_MAX_KERNELS + 1} />
      </div>,
    );
    const ask = screen.getByTestId('insight-badge-ask');
    expect(ask.getAttribute('title')).toContain('2,000,001 kernels');
    await new Promise((r) => setTimeout(r, 20));
    expect(fetch).not.toHaveBeenCalled();
    fireEvent.click(ask);
    await waitFor(() => expect(screen.getByTestId('insight-badge')).toBeTruthy());
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(row).not.toHaveBeenCalled();
  });
});
