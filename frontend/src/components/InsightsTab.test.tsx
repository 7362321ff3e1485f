import { cleanup, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Api } from '../api/client';
// The backend's real answer for examples/captures/deep_sass (see the file's _comment).
import deep from '../lib/fixtures/insights_deep_sass.json';
import { InsightsTab } from './InsightsTab';

afterEach(() => {
  vi.unstubAllGlobals();
  cleanup();
});

describe('InsightsTab', () => {
  it('renders the deep rules as any other: a card per insight, its facts, its kernel and source lines', async () => {
    const body = JSON.stringify(deep);
    vi.stubGlobal('fetch', vi.fn(async () => new Response(body, { status: 200, headers: { 'Content-Type': 'application/json' } })));
    const session = { id: deep.session_id, origin: BigInt(deep.origin_ns) } as never;
    const { container } = render(<InsightsTab api={new Api('t')} session={session} navigate={() => {}} />);
    await waitFor(() => expect(screen.getByTestId('insights')).toBeTruthy());
    const cards = [...container.querySelectorAll('section.insight')];
    expect(cards.map((c) => c.getAttribute('data-rule'))).toEqual(deep.items.map((i) => i.rule));
    const quad = cards.find((c) => c.textContent!.includes('div_quad'))!;
    expect(quad.querySelector('.insight-title')!.textContent).toBe(deep.items.find((i) => i.title.startsWith('div_quad'))!.title);
    const facts = Object.fromEntries([...quad.querySelectorAll('dl.facts > div')].map((d) => [d.querySelector('dt')!.textContent, d.querySelector('dd')!.textContent]));
    expect(facts['active threads per warp instruction']).toBe('8.21');
    expect(facts['share of kernel time']).toMatch(/^\d+\.\d %$/);
    const rows = [...quad.querySelectorAll('table.involved tr')].map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent));
    expect(rows[0].slice(0, 2)).toEqual(['kernel', 'div_quad(float*, float)']);
    expect(rows.slice(1).map((r) => r[0])).toEqual(rows.slice(1).map(() => 'line'));
    expect(rows.length).toBeGreaterThan(1);
    expect(rows[1][2]).toMatch(/^active threads per warp instruction [\d.]+ · warp instructions [\d,]+$/);
    // the rule that had no samples is listed as not checked, with its reason
    expect(screen.getByTestId('not-checked').textContent).toContain('stall_reason: no PC-sampling samples');
  });
});
